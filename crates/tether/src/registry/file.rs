use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use super::{BoxFuture, Instance, Registry, Role, Subscription, path, registry_error};
use crate::{error::Error, service::ServiceKey};

/// How often subscribers look at the directory: changes show within this.
const POLL: Duration = Duration::from_millis(250);
/// How long an entry lives without being refreshed: what a crashed process leaves behind is
/// dropped after this.
const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// A registry in a directory shared by the processes of one machine; no server needed.
///
/// Each registration is a JSON file at `{dir}/tether/{service}/{version}/{group}/{role}/
/// {host:port}.json`, written atomically. Its owner touches it every third of the TTL (and
/// writes it again if it was removed); subscribers scan the directory every 250 ms and ignore,
/// then remove, files not touched for a TTL, which is what a crashed process leaves behind.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ttl: Duration,
    /// This process's registrations, kept fresh by the refresher.
    own: Mutex<HashMap<PathBuf, Instance>>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(refresher) = self.refresher.get_mut().ok().and_then(Option::take) {
            refresher.abort();
        }
    }
}

impl FileRegistry {
    /// A registry in `dir`, created if missing, with the default TTL of 10 s.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::with_ttl(dir, DEFAULT_TTL).await
    }

    /// A registry in `dir` whose entries expire `ttl` after their last refresh.
    pub async fn with_ttl(dir: impl AsRef<Path>, ttl: Duration) -> Result<Self, Error> {
        let dir = dir.as_ref().to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            registry_error(format!("cannot create {}", dir.display())).with_source(e)
        })?;
        let inner = Inner {
            dir,
            ttl,
            own: Mutex::default(),
            refresher: Mutex::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn file_of(&self, role: Role, instance: &Instance) -> PathBuf {
        self.inner
            .file(&format!("{}.json", path::instance_path(role, instance)))
    }

    /// Starts the task that keeps this process's entries fresh, once.
    fn ensure_refresher(&self) {
        let mut refresher = lock(&self.inner.refresher);
        if refresher.is_none() {
            let inner = Arc::downgrade(&self.inner);
            let every = self.inner.ttl / 3;
            *refresher = Some(tokio::spawn(refresh(inner, every)));
        }
    }
}

impl Inner {
    fn file(&self, registry_path: &str) -> PathBuf {
        self.dir.join(registry_path.trim_start_matches('/'))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `instance` to `file` so that readers never see half of it: a temporary file in the
/// same directory, then a rename over the old one.
fn write_atomically(file: &Path, instance: &Instance) -> io::Result<()> {
    let parent = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&temporary, instance.to_json())?;
    fs::rename(&temporary, file)
}

/// Touches every entry of this process every `every`, and writes again any that vanished.
///
/// Each entry is checked and touched under the lock of the registrations, which deregistering
/// holds while it forgets and removes an entry: a refresh can never bring back an entry that was
/// just deregistered.
async fn refresh(inner: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let refreshed = tokio::task::spawn_blocking(move || {
            let own = lock(&inner.own);
            for (file, instance) in own.iter() {
                let touched = fs::File::options()
                    .write(true)
                    .open(file)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                if touched.is_err()
                    && let Err(error) = write_atomically(file, instance)
                {
                    tracing::warn!(file = %file.display(), %error, "cannot refresh a registration");
                }
            }
        })
        .await;
        if refreshed.is_err() {
            return;
        }
    }
}

/// The live providers in `dir`, removing entries that expired. `Err` if the directory exists but
/// cannot be read: the caller then keeps what it had.
fn scan(dir: &Path, ttl: Duration) -> io::Result<Vec<Instance>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let now = SystemTime::now();
    let mut providers = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file = entry.path();
        if file.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if now.duration_since(modified).unwrap_or_default() > ttl {
            tracing::info!(file = %file.display(), "dropping an expired registration");
            let _ = fs::remove_file(&file);
            continue;
        }
        match fs::read(&file).map(|json| Instance::from_json(&json)) {
            Ok(Ok(instance)) => providers.push(instance),
            Ok(Err(error)) => {
                tracing::warn!(file = %file.display(), %error, "ignoring an unreadable registration")
            }
            Err(_) => {} // removed since the listing
        }
    }
    providers.sort_by_key(Instance::address);
    Ok(providers)
}

/// Keeps `sender` up to date with the directory until nobody listens.
async fn watch_directory(dir: PathBuf, ttl: Duration, sender: watch::Sender<Arc<Vec<Instance>>>) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sender.closed() => return,
            _ = ticks.tick() => {}
        }
        let scanned = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || scan(&dir, ttl)).await
        };
        match scanned {
            Ok(Ok(providers)) => {
                sender.send_if_modified(|current| {
                    let changed = **current != providers;
                    if changed {
                        *current = Arc::new(providers);
                    }
                    changed
                });
            }
            Ok(Err(error)) => {
                tracing::warn!(dir = %dir.display(), %error, "registry unreadable; keeping the last known providers");
            }
            Err(_) => return,
        }
    }
}

impl Registry for FileRegistry {
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>> {
        let file = self.file_of(role, &instance);
        let inner = self.inner.clone();
        self.ensure_refresher();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut own = lock(&inner.own);
                let written = write_atomically(&file, &instance);
                own.insert(file.clone(), instance);
                written.map_err(|error| {
                    registry_error(format!("cannot write {}", file.display())).with_source(error)
                })
            })
            .await;
            written.unwrap_or_else(|error| {
                Err(registry_error("the registration task failed").with_source(error))
            })
        })
    }

    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>> {
        let file = self.file_of(role, instance);
        let inner = self.inner.clone();
        Box::pin(async move {
            let removed = tokio::task::spawn_blocking(move || {
                let mut own = lock(&inner.own);
                own.remove(&file);
                match fs::remove_file(&file) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(registry_error(format!("cannot remove {}", file.display()))
                        .with_source(error)),
                }
            })
            .await;
            removed.unwrap_or_else(|error| {
                Err(registry_error("the deregistration task failed").with_source(error))
            })
        })
    }

    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>> {
        let key = key.clone();
        Box::pin(async move {
            let dir = self.inner.file(&path::role_dir(&key, Role::Provider));
            let ttl = self.inner.ttl;
            let current = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || scan(&dir, ttl)).await
            };
            let current = match current {
                Ok(Ok(providers)) => providers,
                Ok(Err(error)) => {
                    return Err(
                        registry_error(format!("cannot read {}", dir.display())).with_source(error)
                    );
                }
                Err(error) => return Err(registry_error("the scan task failed").with_source(error)),
            };
            let (sender, receiver) = watch::channel(Arc::new(current));
            tokio::spawn(watch_directory(dir, ttl, sender));
            Ok(Subscription::new(key, receiver))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("demo.Calculator").with_version("1.0.0")
    }

    /// Waits for the next provider set, at most `within`.
    async fn next(subscription: &mut Subscription, within: Duration) -> Arc<Vec<Instance>> {
        tokio::time::timeout(within, subscription.changed())
            .await
            .expect("a change in time")
            .expect("the registry lives")
    }

    #[tokio::test]
    async fn another_process_sees_registrations_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let provider = FileRegistry::open(dir.path()).await.unwrap();
        let consumer = FileRegistry::open(dir.path()).await.unwrap();
        let mut subscription = consumer.subscribe(&key()).await.unwrap();
        assert!(subscription.providers().is_empty());

        let instance = Instance::new(&key(), "127.0.0.1", 20880);
        let registered = Instant::now();
        provider
            .register(Role::Provider, instance.clone())
            .await
            .unwrap();
        assert_eq!(
            *next(&mut subscription, Duration::from_secs(1)).await,
            vec![instance.clone()]
        );
        eprintln!(
            "file registry: registration seen after {:?}",
            registered.elapsed()
        );

        let file = dir
            .path()
            .join("tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:20880.json");
        let stored = Instance::from_json(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            stored, instance,
            "the documented path holds the instance's JSON"
        );

        provider
            .deregister(Role::Provider, &instance)
            .await
            .unwrap();
        assert!(
            next(&mut subscription, Duration::from_secs(1))
                .await
                .is_empty()
        );
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn a_crashed_providers_entry_expires() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(600);
        let provider = FileRegistry::with_ttl(dir.path(), ttl).await.unwrap();
        let consumer = FileRegistry::with_ttl(dir.path(), ttl).await.unwrap();
        let instance = Instance::new(&key(), "127.0.0.1", 1);
        provider
            .register(Role::Provider, instance.clone())
            .await
            .unwrap();
        let mut subscription = consumer.subscribe(&key()).await.unwrap();
        assert_eq!(subscription.providers().len(), 1);

        // Alive while refreshed: several TTLs pass with the entry in place.
        let stays = tokio::time::timeout(3 * ttl, subscription.changed()).await;
        assert!(stays.is_err(), "a refreshed entry must not expire");

        drop(provider); // the process "crashes": nothing refreshes the entry any more
        let crashed = Instant::now();
        assert!(
            next(&mut subscription, ttl + Duration::from_secs(2))
                .await
                .is_empty()
        );
        eprintln!(
            "file registry: crashed provider dropped after {:?}",
            crashed.elapsed()
        );
    }

    #[tokio::test]
    async fn a_removed_entry_is_written_again_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(600);
        let registry = FileRegistry::with_ttl(dir.path(), ttl).await.unwrap();
        let consumer = FileRegistry::with_ttl(dir.path(), ttl).await.unwrap();
        let instance = Instance::new(&key(), "127.0.0.1", 2);
        registry
            .register(Role::Provider, instance.clone())
            .await
            .unwrap();
        let subscription = consumer.subscribe(&key()).await.unwrap();
        let file = dir
            .path()
            .join("tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:2.json");
        std::fs::remove_dir_all(dir.path().join("tether")).unwrap();
        // The owner writes it again within a refresh period; the subscriber may or may not have
        // seen the gap, but ends up with the entry.
        let restored = tokio::time::timeout(ttl + Duration::from_secs(2), async {
            while !(file.exists() && *subscription.providers() == vec![instance.clone()]) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(restored.is_ok(), "the entry was not written again");
    }

    #[tokio::test]
    async fn consumers_are_registered_apart_from_providers() {
        let dir = tempfile::tempdir().unwrap();
        let registry = FileRegistry::open(dir.path()).await.unwrap();
        let consumer = Instance::new(&key(), "127.0.0.1", 0);
        registry.register(Role::Consumer, consumer).await.unwrap();
        assert!(
            dir.path()
                .join("tether/demo.Calculator/1.0.0/-/consumers/127.0.0.1:0.json")
                .exists()
        );
        assert!(
            registry
                .subscribe(&key())
                .await
                .unwrap()
                .providers()
                .is_empty()
        );
    }
}
