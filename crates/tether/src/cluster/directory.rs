//! The providers of one service as the registry reports them, each with its own self-healing
//! connection.
//!
//! A follower task applies every provider set the subscription delivers: a new provider gets a
//! lazily connecting [`Channel`], a provider that is still there keeps its own, and one that left
//! is dropped, which stops its reconnects. While the registry cannot be reached the subscription
//! keeps the last set, and so does the directory. The follower also folds the providers'
//! connection states into one: ready while any provider is ready.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use futures_util::future::select_all;
use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use crate::{
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::Frame,
    registry::{Instance, Registry, Role, Subscription},
    service::ServiceKey,
    transport::{Channel, ConnectionState, Request},
};

/// One provider: what the registry says of it, and the connection to it.
#[derive(Clone)]
pub(crate) struct Provider {
    pub(crate) instance: Instance,
    pub(crate) channel: Channel,
}

pub(crate) struct Directory {
    key: ServiceKey,
    config: ClientConfig,
    registry: Arc<dyn Registry>,
    /// This process as a consumer of the service, registered while the directory lives.
    consumer: Instance,
    providers: Mutex<Arc<Vec<Provider>>>,
    /// Ready while any provider is ready.
    state: watch::Sender<ConnectionState>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let providers = self.providers();
        let addresses: Vec<_> = providers.iter().map(|p| p.instance.address()).collect();
        f.debug_struct("Directory")
            .field("key", &self.key)
            .field("providers", &addresses)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Directory {
    /// Subscribes to `key` and starts following it; fails if the registry cannot be reached
    /// now.
    pub(crate) async fn follow(
        registry: Arc<dyn Registry>,
        key: ServiceKey,
        config: ClientConfig,
    ) -> Result<Arc<Self>, Error> {
        let subscription = registry.subscribe(&key).await?;
        let consumer = Instance::consumer(&key, local_host());
        if let Err(error) = registry.register(Role::Consumer, consumer.clone()).await {
            tracing::warn!(service = %key, %error, "cannot register as a consumer");
        }
        let (state, _) = watch::channel(ConnectionState::Connecting);
        let directory = Arc::new(Self {
            key,
            config,
            registry,
            consumer,
            providers: Mutex::default(),
            state,
        });
        directory.apply(&subscription.providers()).await;
        tokio::spawn(run(Arc::downgrade(&directory), subscription));
        Ok(directory)
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Vec<Provider>>> {
        self.providers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The providers now.
    pub(crate) fn providers(&self) -> Arc<Vec<Provider>> {
        self.lock().clone()
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    pub(crate) fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// Replaces the provider set, keeping the connections of providers that stay.
    async fn apply(&self, instances: &[Instance]) {
        let current: HashMap<String, Provider> = self
            .providers()
            .iter()
            .map(|provider| (provider.instance.address(), provider.clone()))
            .collect();
        let mut next = Vec::with_capacity(instances.len());
        for instance in instances {
            if let Some(existing) = current.get(&instance.address()) {
                next.push(Provider {
                    instance: instance.clone(),
                    channel: existing.channel.clone(),
                });
                continue;
            }
            match resolve(instance).await {
                Some(addr) => {
                    let channel = Channel::connect_lazy(addr, self.config.clone());
                    next.push(Provider {
                        instance: instance.clone(),
                        channel,
                    });
                }
                None => {
                    tracing::warn!(service = %self.key, address = %instance.address(), "cannot resolve a provider's address")
                }
            }
        }
        let added = next
            .iter()
            .filter(|p| !current.contains_key(&p.instance.address()))
            .count();
        let removed = current.len() + added - next.len();
        tracing::info!(service = %self.key, providers = next.len(), added, removed, "providers changed");
        *self.lock() = Arc::new(next);
        self.refresh_state();
    }

    /// Folds the providers' states into the directory's: ready while any provider is ready,
    /// connecting while any first attempt is under way, otherwise reconnecting (one failure).
    fn refresh_state(&self) {
        let providers = self.providers();
        let state = if providers.iter().any(|p| p.channel.is_ready()) {
            ConnectionState::Ready
        } else if providers.iter().any(|p| p.channel.is_connecting()) {
            ConnectionState::Connecting
        } else {
            let reason = if providers.is_empty() {
                "the registry lists no provider"
            } else {
                "no provider is ready"
            };
            // Counted as a failure, so that `is_connecting` is false: nothing is under way.
            ConnectionState::Reconnecting {
                failures: 1,
                retry_in: Duration::ZERO,
                reason: reason.to_owned(),
            }
        };
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            if changed {
                tracing::info!(service = %self.key, %state, "service state");
                *current = state;
            }
            changed
        });
    }

    /// Sends a request to a ready provider, chosen at random. With none ready, waits while a
    /// first connection to some provider is under way (or always, with `wait_for_ready`) until
    /// `deadline`; otherwise fails fast as unavailable.
    pub(crate) async fn call<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
        wait_for_ready: bool,
    ) -> Result<Option<Frame>, Error> {
        let mut state = self.state.subscribe();
        loop {
            if let Some(channel) = self.pick() {
                return channel.call(request, deadline, false).await;
            }
            let connecting = self.providers().iter().any(|p| p.channel.is_connecting());
            if !(wait_for_ready || connecting) {
                return Err(self.unavailable());
            }
            let changed = tokio::time::timeout_at(deadline, state.changed()).await;
            match changed {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.unavailable()),
                Err(_) => return Err(Error::timeout(request.timeout)),
            }
        }
    }

    /// A ready provider's channel, chosen at random without allocating.
    fn pick(&self) -> Option<Channel> {
        let providers = self.lock();
        let ready = providers.iter().filter(|p| p.channel.is_ready()).count();
        if ready == 0 {
            return None;
        }
        let chosen = fastrand::usize(..ready);
        providers
            .iter()
            .filter(|p| p.channel.is_ready())
            .nth(chosen)
            .map(|p| p.channel.clone())
    }

    fn unavailable(&self) -> Error {
        let message = format!("no provider of {} is ready: {}", self.key, self.state());
        Error::new(ErrorKind::Unavailable, message)
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // Best effort, and only inside a runtime: the registry also forgets a consumer whose
        // session, lease or TTL ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let registry = self.registry.clone();
            let consumer = self.consumer.clone();
            runtime.spawn(async move { registry.deregister(Role::Consumer, &consumer).await });
        }
    }
}

/// The host this process registers under as a consumer: `$HOSTNAME`, or `localhost`.
fn local_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn resolve(instance: &Instance) -> Option<SocketAddr> {
    tokio::net::lookup_host(instance.address())
        .await
        .ok()?
        .next()
}

/// Follows the subscription and the providers' states until the directory is dropped.
async fn run(directory: Weak<Directory>, mut subscription: Subscription) {
    loop {
        let Some(states) = directory.upgrade().map(|d| {
            d.providers()
                .iter()
                .map(|p| p.channel.watch_state())
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        let any_state_changed = async move {
            if states.is_empty() {
                return std::future::pending().await;
            }
            let mut states = states;
            let changes = states.iter_mut().map(|state| Box::pin(state.changed()));
            let _ = select_all(changes).await;
        };
        tokio::select! {
            providers = subscription.changed() => {
                let Some(directory) = directory.upgrade() else { return };
                match providers {
                    Some(providers) => directory.apply(&providers).await,
                    // The registry backend is gone; keep what we have for as long as we live.
                    None => {
                        tracing::warn!(service = %directory.key, "registry subscription ended; keeping the last known providers");
                        drop(directory);
                        std::future::pending::<()>().await;
                    }
                }
            }
            () = any_state_changed => {
                let Some(directory) = directory.upgrade() else { return };
                directory.refresh_state();
            }
        }
    }
}
