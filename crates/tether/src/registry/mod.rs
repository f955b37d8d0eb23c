//! Service discovery: providers announce themselves in a registry, consumers follow the set of
//! providers of a service as it changes.
//!
//! [`Registry`] is the one interface; each backend is a file of its own: [`MemoryRegistry`]
//! (in-process) and [`FileRegistry`] (a directory shared by the processes of one machine) are
//! always there; ZooKeeper, etcd and Redis backends come with the features of the same name.
//! [`connect`] picks one from a URL. `docs/registry.md` documents, per backend, every path or key
//! written and the JSON stored there.
//!
//! A subscription is a [`tokio::sync::watch`] of the whole provider set: a consumer always holds
//! the latest set it was told, keeps it while the registry is unreachable, and never has to
//! replay a stream of events.

#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod instance;
mod memory;
mod path;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "zookeeper")]
mod zookeeper;

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::sync::watch;

#[cfg(feature = "etcd")]
pub use self::etcd::EtcdRegistry;
#[cfg(feature = "redis")]
pub use self::redis::RedisRegistry;
#[cfg(feature = "zookeeper")]
pub use self::zookeeper::ZooKeeperRegistry;
pub use self::{
    file::FileRegistry,
    instance::{Instance, Role},
    memory::MemoryRegistry,
};
use crate::{
    error::{Error, ErrorKind},
    service::ServiceKey,
};

/// A boxed future, so that [`Registry`] can be used as a trait object chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where providers and consumers announce themselves, and where consumers learn of providers.
///
/// A backend keeps every registration alive by its own means (an ephemeral node, a lease, a
/// refreshed TTL) until it is deregistered or the registry is dropped, and restores it by itself
/// after losing it (a ZooKeeper session expiry, an etcd lease loss, a Redis restart). A crashed
/// process's registrations disappear when their session, lease or TTL ends.
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// Announces `instance` as a provider or a consumer of its service, and keeps it announced.
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>>;

    /// Withdraws an announcement; withdrawing one that is not there is not an error.
    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>>;

    /// Follows the providers of `key`: the subscription holds the current set at once and is
    /// updated on every change. While the registry cannot be reached, it keeps the last set.
    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>>;
}

/// The providers of one service, as the registry last reported them.
#[derive(Debug, Clone)]
pub struct Subscription {
    key: ServiceKey,
    providers: watch::Receiver<Arc<Vec<Instance>>>,
}

impl Subscription {
    /// A subscription fed by `providers`; backends make these.
    pub(crate) fn new(key: ServiceKey, providers: watch::Receiver<Arc<Vec<Instance>>>) -> Self {
        Self { key, providers }
    }

    /// The service followed.
    pub fn key(&self) -> &ServiceKey {
        &self.key
    }

    /// The providers now, sorted by address.
    pub fn providers(&self) -> Arc<Vec<Instance>> {
        self.providers.borrow().clone()
    }

    /// Waits for the next change and returns the new set; `None` once the registry is gone.
    pub async fn changed(&mut self) -> Option<Arc<Vec<Instance>>> {
        self.providers.changed().await.ok()?;
        Some(self.providers.borrow_and_update().clone())
    }
}

/// Settings of the registries; only `ttl` applies to the file registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// How long a registration outlives its process once that process falls silent: the
    /// ZooKeeper session timeout, the etcd lease TTL, the Redis key TTL, the file entry's age. A
    /// crashed provider disappears within about this. Default: 10 s.
    pub ttl: Duration,
    /// How long connecting to the server and each operation may take. Default: 5 s.
    pub timeout: Duration,
    /// How often a subscriber re-reads the whole provider set even without a change
    /// notification (Redis, whose pub/sub can drop messages). Default: 5 s.
    pub resync_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            resync_interval: Duration::from_secs(5),
        }
    }
}

impl RegistryConfig {
    /// Applies `ttl_ms`, `timeout_ms` and `resync_ms` from a URL query such as
    /// `ttl_ms=2000&timeout_ms=1000`.
    fn apply_query(&mut self, query: &str) -> Result<(), Error> {
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let millis: u64 = value.parse().map_err(|_| {
                registry_error(format!("`{pair}`: expected a number of milliseconds"))
            })?;
            let duration = Duration::from_millis(millis);
            match name {
                "ttl_ms" => self.ttl = duration,
                "timeout_ms" => self.timeout = duration,
                "resync_ms" => self.resync_interval = duration,
                _ => return Err(registry_error(format!("unknown registry setting `{name}`"))),
            }
        }
        Ok(())
    }
}

/// Opens the registry a URL names, with settings from its query (see [`RegistryConfig`]):
///
/// | URL | backend |
/// |---|---|
/// | `memory://` or `memory://NAME` | [`MemoryRegistry`], shared in the process by name |
/// | `file:///some/dir` | [`FileRegistry`] in that directory |
/// | `zookeeper://127.0.0.1:2181[,host:port…]` | ZooKeeper (feature `zookeeper`) |
/// | `etcd://127.0.0.1:2379[,host:port…]` | etcd (feature `etcd`) |
/// | `redis://127.0.0.1:6379` | Redis (feature `redis`) |
///
/// For example `zookeeper://127.0.0.1:2181,127.0.0.1:2182?ttl_ms=4000`.
pub async fn connect(url: &str) -> Result<Arc<dyn Registry>, Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| registry_error(format!("`{url}` is not a registry URL (scheme://…)")))?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut config = RegistryConfig::default();
    config.apply_query(query)?;
    match scheme {
        "memory" => Ok(Arc::new(MemoryRegistry::named(location))),
        "file" => Ok(Arc::new(
            FileRegistry::with_ttl(location, config.ttl).await?,
        )),
        #[cfg(feature = "zookeeper")]
        "zookeeper" => Ok(Arc::new(
            ZooKeeperRegistry::connect(location, config).await?,
        )),
        #[cfg(feature = "etcd")]
        "etcd" => Ok(Arc::new(EtcdRegistry::connect(location, config).await?)),
        #[cfg(feature = "redis")]
        "redis" => Ok(Arc::new(RedisRegistry::connect(location, config).await?)),
        _ => Err(registry_error(format!(
            "registry scheme `{scheme}` is not supported by this build (its feature may be off)"
        ))),
    }
}

pub(crate) fn registry_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Registry, message.into())
}
