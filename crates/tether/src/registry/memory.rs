use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
};

use tokio::sync::watch;

use super::{BoxFuture, Instance, Registry, Role, Subscription};
use crate::{error::Error, service::ServiceKey};

/// A registry inside one process: for tests, demos and single-process deployments. Clones share
/// their registrations.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    tables: Arc<Mutex<Tables>>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Registrations by service and role, then by address.
    entries: HashMap<(ServiceKey, Role), BTreeMap<String, Instance>>,
    /// One sender per followed service; consumers hold its receivers.
    providers: HashMap<ServiceKey, watch::Sender<Arc<Vec<Instance>>>>,
}

impl MemoryRegistry {
    /// An empty registry of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry called `name` in this process, made on first use: what `memory://NAME`
    /// opens, so that a provider and a consumer configured by URL meet.
    pub fn named(name: &str) -> Self {
        // A process-wide table of names is the point of `memory://NAME`; it holds only handles.
        static NAMED: OnceLock<Mutex<HashMap<String, MemoryRegistry>>> = OnceLock::new();
        let named = NAMED.get_or_init(Default::default);
        let mut named = named
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        named.entry(name.to_owned()).or_default().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The registrations of `key` in `role` now, sorted by address.
    pub fn instances(&self, key: &ServiceKey, role: Role) -> Vec<Instance> {
        self.lock().list(key, role)
    }
}

impl Tables {
    fn list(&self, key: &ServiceKey, role: Role) -> Vec<Instance> {
        self.entries
            .get(&(key.clone(), role))
            .map(|by_address| by_address.values().cloned().collect())
            .unwrap_or_default()
    }

    fn publish(&mut self, key: &ServiceKey) {
        let providers = Arc::new(self.list(key, Role::Provider));
        if let Some(sender) = self.providers.get(key) {
            sender.send_replace(providers);
        }
    }
}

impl Registry for MemoryRegistry {
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>> {
        let mut tables = self.lock();
        let key = instance.key();
        let by_address = tables.entries.entry((key.clone(), role)).or_default();
        by_address.insert(instance.id(), instance);
        if role == Role::Provider {
            tables.publish(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>> {
        let mut tables = self.lock();
        let key = instance.key();
        if let Some(by_address) = tables.entries.get_mut(&(key.clone(), role)) {
            by_address.remove(&instance.id());
        }
        if role == Role::Provider {
            tables.publish(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>> {
        let mut tables = self.lock();
        let current = Arc::new(tables.list(key, Role::Provider));
        let sender = tables
            .providers
            .entry(key.clone())
            .or_insert_with(|| watch::channel(current).0);
        let subscription = Subscription::new(key.clone(), sender.subscribe());
        Box::pin(async { Ok(subscription) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("demo.Calculator").with_version("1.0.0")
    }

    #[tokio::test]
    async fn subscribers_see_every_change() {
        let registry = MemoryRegistry::new();
        let first = Instance::new(&key(), "127.0.0.1", 1);
        registry
            .register(Role::Provider, first.clone())
            .await
            .unwrap();
        let mut subscription = registry.subscribe(&key()).await.unwrap();
        assert_eq!(*subscription.providers(), vec![first.clone()]);

        let second = Instance::new(&key(), "127.0.0.1", 2);
        registry
            .register(Role::Provider, second.clone())
            .await
            .unwrap();
        assert_eq!(
            *subscription.changed().await.unwrap(),
            vec![first.clone(), second.clone()]
        );

        registry.deregister(Role::Provider, &first).await.unwrap();
        assert_eq!(*subscription.changed().await.unwrap(), vec![second]);
    }

    #[tokio::test]
    async fn consumers_and_other_versions_are_not_providers() {
        let registry = MemoryRegistry::new();
        registry
            .register(Role::Consumer, Instance::new(&key(), "127.0.0.1", 0))
            .await
            .unwrap();
        let other = key().with_version("2.0.0");
        registry
            .register(Role::Provider, Instance::new(&other, "127.0.0.1", 1))
            .await
            .unwrap();
        let subscription = registry.subscribe(&key()).await.unwrap();
        assert!(subscription.providers().is_empty());
        assert_eq!(registry.instances(&key(), Role::Consumer).len(), 1);
    }

    #[tokio::test]
    async fn a_name_is_one_registry_in_the_process() {
        let instance = Instance::new(&key(), "127.0.0.1", 7);
        MemoryRegistry::named("shared-by-name")
            .register(Role::Provider, instance)
            .await
            .unwrap();
        let seen = MemoryRegistry::named("shared-by-name").instances(&key(), Role::Provider);
        assert_eq!(seen.len(), 1);
        assert!(
            MemoryRegistry::named("another-name")
                .instances(&key(), Role::Provider)
                .is_empty()
        );
    }
}
