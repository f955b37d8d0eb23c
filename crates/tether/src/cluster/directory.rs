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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{broadcast, failfast, failover, failsafe, forking};
use crate::{
    CallOptions,
    balance::{Balancer, Endpoints, PeakEwma, PickContext, warmed_weight},
    config::{ClientConfig, Cluster},
    error::{Error, ErrorKind},
    protocol::Frame,
    registry::{Instance, Registry, Role, Subscription},
    service::ServiceKey,
    transport::{Channel, Connection, ConnectionState, Request, Slot},
};

/// One provider: what the registry says of it, the connection to it, and what the balancers
/// need to know of it.
#[derive(Clone)]
pub(crate) struct Provider {
    pub(crate) instance: Instance,
    pub(crate) address: String,
    pub(crate) channel: Channel,
    pub(crate) stats: Arc<Stats>,
}

/// Calls in flight to a provider and its latency, for `least_active` and `p2c_peak_ewma`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    in_flight: AtomicU32,
    latency: PeakEwma,
}

pub(crate) struct Directory {
    key: ServiceKey,
    config: ClientConfig,
    balancer: Arc<dyn Balancer>,
    /// Changes whenever the list of addresses does: consistent hashing rebuilds its ring then.
    generation: AtomicU64,
    /// Set by the first call: from then on a new provider connects at once rather than idly
    /// waiting for a call that, with other providers ready, would never pick it.
    in_use: AtomicBool,
    /// The registry followed and this process as a consumer registered in it while the
    /// directory lives; `None` for a fixed list of addresses.
    consumer: Option<(Arc<dyn Registry>, Instance)>,
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
        balancer: Arc<dyn Balancer>,
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
            balancer,
            generation: AtomicU64::new(0),
            in_use: AtomicBool::new(false),
            consumer: Some((registry, consumer)),
            providers: Mutex::default(),
            state,
        });
        directory.apply(&subscription.providers()).await;
        tokio::spawn(run(Arc::downgrade(&directory), Some(subscription)));
        Ok(directory)
    }

    /// A directory of a fixed list of providers, which never changes.
    pub(crate) async fn fixed(
        addrs: &[SocketAddr],
        config: ClientConfig,
        balancer: Arc<dyn Balancer>,
    ) -> Arc<Self> {
        // No registry: the key and start times are unknown, so nobody warms up.
        let key = ServiceKey::new("");
        let instances: Vec<_> = addrs
            .iter()
            .map(|addr| {
                let mut instance = Instance::new(&key, addr.ip().to_string(), addr.port());
                instance.start_time = 0;
                instance
            })
            .collect();
        let (state, _) = watch::channel(ConnectionState::Idle);
        let directory = Arc::new(Self {
            key,
            config,
            balancer,
            generation: AtomicU64::new(0),
            in_use: AtomicBool::new(false),
            consumer: None,
            providers: Mutex::default(),
            state,
        });
        directory.apply(&instances).await;
        tokio::spawn(run(Arc::downgrade(&directory), None));
        directory
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
            .map(|provider| (provider.address.clone(), provider.clone()))
            .collect();
        let mut next = Vec::with_capacity(instances.len());
        for instance in instances {
            let address = instance.address();
            if let Some(existing) = current.get(&address) {
                next.push(Provider {
                    instance: instance.clone(),
                    ..existing.clone()
                });
                continue;
            }
            match resolve(&address).await {
                Some(addr) => {
                    let channel = if self.config.eager || self.in_use.load(Ordering::Relaxed) {
                        Channel::connect_lazy(addr, self.config.clone())
                    } else {
                        Channel::idle(addr, self.config.clone())
                    };
                    let stats = Arc::default();
                    next.push(Provider {
                        instance: instance.clone(),
                        address,
                        channel,
                        stats,
                    });
                }
                None => {
                    tracing::warn!(service = %self.key, %address, "cannot resolve a provider's address")
                }
            }
        }
        let membership_changed =
            next.len() != current.len() || next.iter().any(|p| !current.contains_key(&p.address));
        if membership_changed {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        let added = next
            .iter()
            .filter(|p| !current.contains_key(&p.address))
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

    /// Sends a request as the cluster strategy says.
    pub(crate) async fn call<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
        wait_for_ready: bool,
        options: &CallOptions,
    ) -> Result<Option<Frame>, Error> {
        if !self.in_use.swap(true, Ordering::Relaxed) {
            // The first call opens the connections the configuration left idle.
            for provider in self.providers().iter() {
                provider.channel.wake();
            }
        }
        let call = Call {
            directory: self,
            request,
            deadline,
            wait_for_ready,
            options,
        };
        if request.oneway {
            return call.once(&[]).await.1;
        }
        match &self.config.cluster {
            Cluster::Failover { retries } => failover::call(&call, *retries).await,
            Cluster::Failfast => failfast::call(&call).await,
            Cluster::Failsafe { fallback } => failsafe::call(&call, fallback).await,
            Cluster::Forking { parallel } => forking::call(&call, *parallel).await,
            Cluster::Broadcast => broadcast::call(&call).await,
        }
    }

    /// The providers as the balancers see them, `excluded` counting as not ready.
    fn view<'a>(&self, providers: &'a [Provider], excluded: &'a [usize]) -> View<'a> {
        let now_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        View {
            providers,
            excluded,
            now: Instant::now(),
            now_unix_ms,
            warmup: self.config.warmup,
        }
    }

    pub(crate) fn unavailable(&self) -> Error {
        let message = format!("no provider of {} is ready: {}", self.key, self.state());
        Error::new(ErrorKind::Unavailable, message)
    }
}

/// One call on its way through the cluster strategy.
pub(crate) struct Call<'a, A: ?Sized> {
    pub(crate) directory: &'a Directory,
    pub(crate) request: &'a Request<'a, A>,
    pub(crate) deadline: Instant,
    wait_for_ready: bool,
    options: &'a CallOptions,
}

impl<A: Serialize + ?Sized> Call<'_, A> {
    /// One attempt on a provider the balancer picks among the ready ones not `excluded`;
    /// returns the provider's index (if one was picked) and the outcome. With none ready, wakes
    /// idle providers and waits while a connection is being opened (or always, with
    /// `wait_for_ready`) until the deadline; otherwise fails fast as unavailable.
    pub(crate) async fn once(
        &self,
        excluded: &[usize],
    ) -> (Option<usize>, Result<Option<Frame>, Error>) {
        let directory = self.directory;
        let mut state = directory.state.subscribe();
        loop {
            if let Some((providers, index)) = self.pick(excluded) {
                let outcome = providers[index].call(self.request, self.deadline).await;
                return (Some(index), outcome);
            }
            let providers = directory.providers();
            let mut connecting = false;
            for (index, provider) in providers.iter().enumerate() {
                provider.channel.wake();
                connecting |= !excluded.contains(&index) && provider.channel.is_connecting();
            }
            if !(self.wait_for_ready || connecting) {
                return (None, Err(directory.unavailable()));
            }
            match tokio::time::timeout_at(self.deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return (None, Err(directory.unavailable())),
                Err(_) => return (None, Err(Error::timeout(self.request.timeout))),
            }
        }
    }

    /// The providers now and the one the balancer picks among the ready ones not `excluded`.
    pub(crate) fn pick(&self, excluded: &[usize]) -> Option<(Arc<Vec<Provider>>, usize)> {
        let providers = self.directory.providers();
        let index = self.pick_from(&providers, excluded)?;
        Some((providers, index))
    }

    /// The index of the provider the balancer picks among the ready ones of `providers` (one
    /// snapshot) not `excluded`.
    pub(crate) fn pick_from(&self, providers: &[Provider], excluded: &[usize]) -> Option<usize> {
        let directory = self.directory;
        let mut context = PickContext::new(directory.generation.load(Ordering::Relaxed));
        if let Some(key) = self.options.hash_key() {
            context = context.with_hash_key(key);
        }
        if let Some(source) = self.options.source() {
            context = context.with_source(source);
        }
        directory
            .balancer
            .pick(&directory.view(providers, excluded), &context)
    }

    /// Whether the call may wait for a provider that is not ready yet.
    pub(crate) fn wait_for_ready(&self) -> bool {
        self.wait_for_ready
    }

    /// One attempt on `provider`.
    pub(crate) async fn on(&self, provider: &Provider) -> Result<Option<Frame>, Error> {
        provider.call(self.request, self.deadline).await
    }
}

/// One request sent to a provider and not answered yet: counted in flight there until it ends
/// (or is dropped), and timed for the balancers.
pub(crate) struct Sent<'a> {
    stats: &'a Stats,
    slot: Option<Slot<'a>>,
    started: Instant,
    _in_flight: InFlight<'a>,
}

impl Sent<'_> {
    /// Waits for the reply until `deadline` (`timeout` is what an error reports).
    pub(crate) async fn reply(
        self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Frame>, Error> {
        let Some(slot) = self.slot else {
            return Ok(None);
        };
        let outcome = slot.reply(deadline, timeout).await;
        if outcome.is_ok() {
            let now = Instant::now();
            self.stats
                .latency
                .observe(now - self.started, now.into_std());
        }
        outcome
    }
}

/// Counts a call out again however it ends, dropped futures included.
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn count(stats: &'a Stats) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Provider {
    /// Sends one request on `connection` (this provider's), counting it in flight from now on;
    /// see [`Connection::send`] for what "sent" guarantees.
    pub(crate) async fn send<'a, A: Serialize + ?Sized>(
        &'a self,
        connection: &'a Connection,
        request: &Request<'_, A>,
        deadline: Instant,
    ) -> Result<Sent<'a>, Error> {
        let in_flight = InFlight::count(&self.stats);
        let started = Instant::now();
        let slot = connection.send(request, deadline).await?;
        Ok(Sent {
            stats: &self.stats,
            slot,
            started,
            _in_flight: in_flight,
        })
    }

    /// Sends one request, counting it in flight and timing it for the balancers.
    async fn call<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
    ) -> Result<Option<Frame>, Error> {
        let _in_flight = InFlight::count(&self.stats);
        let started = Instant::now();
        let outcome = self.channel.call(request, deadline, false).await;
        if outcome.is_ok() {
            let now = Instant::now();
            self.stats.latency.observe(now - started, now.into_std());
        }
        outcome
    }
}

/// The providers as a balancer sees them.
struct View<'a> {
    providers: &'a [Provider],
    excluded: &'a [usize],
    now: Instant,
    now_unix_ms: u64,
    warmup: Duration,
}

impl Endpoints for View<'_> {
    fn len(&self) -> usize {
        self.providers.len()
    }

    fn address(&self, index: usize) -> &str {
        &self.providers[index].address
    }

    fn weight(&self, index: usize) -> u32 {
        let instance = &self.providers[index].instance;
        let uptime = Duration::from_millis(self.now_unix_ms.saturating_sub(instance.start_time));
        warmed_weight(instance.weight, uptime, self.warmup)
    }

    fn is_ready(&self, index: usize) -> bool {
        !self.excluded.contains(&index) && self.providers[index].channel.is_ready()
    }

    fn in_flight(&self, index: usize) -> u32 {
        self.providers[index]
            .stats
            .in_flight
            .load(Ordering::Relaxed)
    }

    fn load(&self, index: usize) -> f64 {
        let stats = &self.providers[index].stats;
        stats
            .latency
            .load(self.now.into_std(), stats.in_flight.load(Ordering::Relaxed))
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // Best effort, and only inside a runtime: the registry also forgets a consumer whose
        // session, lease or TTL ends.
        if let (Some((registry, consumer)), Ok(runtime)) =
            (self.consumer.take(), tokio::runtime::Handle::try_current())
        {
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

async fn resolve(address: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(address).await.ok()?.next()
}

/// Follows the subscription and the providers' states until the directory is dropped.
async fn run(directory: Weak<Directory>, mut subscription: Option<Subscription>) {
    loop {
        // Subscribe to every provider's state first, then fold the states in: a change that
        // happened before the subscription is seen by the fold, one after it wakes the loop.
        let Some(states) = directory.upgrade().map(|d| {
            let states: Vec<_> = d
                .providers()
                .iter()
                .map(|p| p.channel.watch_state())
                .collect();
            d.refresh_state();
            states
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
            providers = async {
                match subscription.as_mut() {
                    Some(subscription) => subscription.changed().await,
                    None => std::future::pending().await,
                }
            } => {
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
