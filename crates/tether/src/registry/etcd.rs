//! The etcd backend (feature `etcd`): every registration is a key bound to one lease per
//! registry, kept alive in the background; a subscriber reads the providers by prefix and then
//! follows them with a watch.
//!
//! # Keys and lease
//!
//! A registration is the key [`path::instance_path`] (for instance
//! `/tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:20880`) holding [`Instance::to_json`].
//! Every key of one [`EtcdRegistry`] is attached to the same lease, granted when it connects with
//! the TTL of [`RegistryConfig::ttl`] in whole seconds (rounded up, at least one). A keeper task
//! sends a keep-alive every third of the TTL on one long-lived stream, so a process that stops
//! (crashes, loses its network) loses its keys within the TTL, and a live one never does.
//!
//! # Recovery
//!
//! The keeper learns that the lease is gone from etcd itself: a keep-alive answered with TTL 0,
//! after an `etcdctl lease revoke` or after the lease expired while etcd could not be reached.
//! It then grants a new lease and puts every key of this registry again; the application does
//! nothing. Registering, deregistering and this recovery take one lock, so a registration never
//! lands on a lease being replaced and recovery never misses one. A registration that finds the
//! lease gone before the keeper does replaces it on the spot.
//!
//! # Watches
//!
//! [`Registry::subscribe`] reads every key under `…/providers/` and publishes them, sorted by
//! address, then watches that prefix from the revision after the read, so no change between the
//! read and the watch is lost. Each watch response updates the set and publishes it. When the
//! watch fails (a node stopped, etcd unreachable) or is cancelled (its revision was compacted),
//! the subscriber reads the whole prefix again and watches from there, with backoff. Until that
//! read succeeds it keeps publishing nothing, so consumers keep the last providers they knew;
//! the log says so once per outage.
//!
//! # Clusters
//!
//! The client spreads requests over every endpoint given. A request that lands on a stopped node
//! fails at once, so every operation is retried with a short backoff within
//! [`RegistryConfig::timeout`]; the keeper and the watches reopen their streams the same way.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    future::Future,
    sync::Arc,
    time::Duration,
};

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions,
};
use tokio::{
    sync::{Mutex, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    BoxFuture, Instance, Registry, RegistryConfig, Role, Subscription, path, registry_error,
};
use crate::{error::Error, service::ServiceKey};

/// The first delay before reopening a stream or re-reading after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest such delay.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// The first delay before retrying a single request (a put, a get) within its timeout: short,
/// because in a cluster the next attempt most likely goes to a live node.
const REQUEST_RETRY_FIRST: Duration = Duration::from_millis(25);
/// The longest delay between attempts of a single request.
const REQUEST_RETRY_MAX: Duration = Duration::from_millis(500);
/// How often HTTP/2 pings check that a quiet connection (a watch with no news) still works.
/// etcd answers pings more frequent than `--grpc-keepalive-min-time` (5 s by default) by closing
/// the connection, so this stays well above that.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(10);

/// A registry kept in etcd (v3 API): leased keys kept alive, watches by prefix.
///
/// Open one with [`EtcdRegistry::connect`] or through [`super::connect`] with
/// `etcd://host:port[,host:port…]`. Dropping it stops its background tasks and revokes its lease,
/// which removes its keys at once (best effort: otherwise they go when the lease expires).
///
/// ```no_run
/// # async fn demo() -> Result<(), tether::Error> {
/// use tether::registry::{EtcdRegistry, RegistryConfig};
///
/// let registry = EtcdRegistry::connect("127.0.0.1:2379", RegistryConfig::default()).await?;
/// # drop(registry);
/// # Ok(()) }
/// ```
pub struct EtcdRegistry {
    shared: Arc<Shared>,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.shared.endpoints)
            .field("ttl_secs", &self.shared.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// What the registry handle and its tasks share.
struct Shared {
    client: Client,
    /// `http://host:port` of every endpoint, for messages.
    endpoints: Vec<String>,
    config: RegistryConfig,
    /// The lease TTL, in the whole seconds etcd takes.
    ttl_secs: i64,
    registrations: Mutex<Registrations>,
    /// Cancelled when the registry is dropped: every task of the registry ends.
    stop: CancellationToken,
}

/// The lease and what this registry put on it; the lock around it orders registrations and
/// lease recovery.
#[derive(Debug)]
struct Registrations {
    lease: i64,
    /// Key → JSON of every registration of this registry: what recovery puts again.
    keys: BTreeMap<String, String>,
    /// Keys deregistered while etcd could not be reached: the keeper deletes them once it can,
    /// since the live lease would otherwise keep them.
    to_delete: BTreeSet<String>,
}

impl EtcdRegistry {
    /// Connects to the etcd cluster at `endpoints` (`host:port`, several separated by commas;
    /// `http://` may be written) and grants the registry's lease, so that an address where no
    /// etcd answers fails here, within [`RegistryConfig::timeout`].
    pub async fn connect(endpoints: &str, config: RegistryConfig) -> Result<Self, Error> {
        let endpoints = parse_endpoints(endpoints)?;
        let listed = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(HTTP2_PING_INTERVAL, config.timeout)
            // A member cut off from the others would serve a watch that never sees a change;
            // requiring a leader makes it refuse, and the request goes to another member.
            .with_require_leader(true);
        let client =
            match tokio::time::timeout(config.timeout, Client::connect(&endpoints, Some(options)))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(error)) => {
                    return Err(registry_error(format!(
                        "cannot set up an etcd client for {listed}: {error}"
                    ))
                    .with_source(error));
                }
                Err(_) => {
                    return Err(registry_error(format!(
                        "cannot set up an etcd client for {listed} within {:?}",
                        config.timeout
                    )));
                }
            };
        let mut shared = Shared {
            client,
            endpoints,
            ttl_secs: ttl_seconds(config.ttl),
            config,
            registrations: Mutex::new(Registrations {
                lease: 0,
                keys: BTreeMap::new(),
                to_delete: BTreeSet::new(),
            }),
            stop: CancellationToken::new(),
        };
        let lease = shared
            .grant()
            .await
            .map_err(|failure| failure.into_error(format!("cannot reach etcd at {listed}")))?;
        shared.registrations.get_mut().lease = lease;
        let shared = Arc::new(shared);
        tracing::debug!(endpoints = %listed, lease = %hex(lease), ttl_secs = shared.ttl_secs, "connected to etcd");
        tokio::spawn(keep_lease_alive(shared.clone()));
        Ok(Self { shared })
    }
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        // Best effort, and only inside a runtime: without it the lease (and every key on it)
        // simply expires after its TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                let lease = shared.registrations.lock().await.lease;
                let mut leases = shared.client.lease_client();
                let revoked =
                    tokio::time::timeout(shared.config.timeout, leases.revoke(lease)).await;
                if !matches!(revoked, Ok(Ok(_))) {
                    tracing::debug!(lease = %hex(lease), "could not revoke the etcd lease; it expires by itself");
                }
            });
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let key = path::instance_path(role, &instance);
            let value = instance.to_json();
            self.shared
                .register(&key, value)
                .await
                .map_err(|failure| failure.into_error(format!("cannot register {key} in etcd")))
        })
    }

    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>> {
        let key = path::instance_path(role, instance);
        Box::pin(async move {
            self.shared.deregister(&key).await.map_err(|failure| {
                failure.into_error(format!(
                    "cannot delete {key} from etcd (it is deleted once etcd answers again)"
                ))
            })
        })
    }

    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>> {
        let key = key.clone();
        Box::pin(async move {
            let prefix = format!("{}/", path::role_dir(&key, Role::Provider));
            let (kvs, revision) = self.shared.read(&prefix).await.map_err(|failure| {
                failure.into_error(format!("cannot read the providers of {key} from etcd"))
            })?;
            let mut providers = Providers::new(key.clone());
            providers.replace(&kvs);
            let (sender, receiver) = watch::channel(Arc::new(providers.list()));
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let stop = shared.stop.clone();
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = sender.closed() => {}
                    () = follow(&shared, &prefix, providers, revision, &sender) => {}
                }
            });
            Ok(Subscription::new(key, receiver))
        })
    }
}

impl Shared {
    /// Runs `operation` until it succeeds, fails in a way a retry cannot fix, or
    /// [`RegistryConfig::timeout`] has passed. In a cluster with a node down, the client sends
    /// some requests to that node, and they fail at once: the retry goes elsewhere.
    async fn retry<T, F, Fut>(&self, mut operation: F) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.config.timeout;
        let mut backoff = Backoff::new(REQUEST_RETRY_FIRST, REQUEST_RETRY_MAX);
        loop {
            let error =
                match tokio::time::timeout_at(deadline, operation(self.client.clone())).await {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(error)) => error,
                    Err(_) => return Err(Failure::TimedOut(self.config.timeout)),
                };
            let pause = backoff.next_delay();
            if !is_transient(&error) || Instant::now() + pause >= deadline {
                return Err(Failure::Etcd(error));
            }
            tracing::debug!(%error, "etcd request failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    async fn grant(&self) -> Result<i64, Failure> {
        let ttl = self.ttl_secs;
        let granted = self
            .retry(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        Ok(granted.id())
    }

    async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), Failure> {
        self.retry(|mut client| async move {
            let options = PutOptions::new().with_lease(lease);
            client.put(key, value, Some(options)).await
        })
        .await
        .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), Failure> {
        self.retry(|mut client| async move { client.delete(key, None).await })
            .await
            .map(drop)
    }

    /// Every key under `prefix` with its value, and the revision they were read at.
    async fn read(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), Failure> {
        let mut response = self
            .retry(|mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let revision = response.header().map_or(0, |header| header.revision());
        Ok((response.take_kvs(), revision))
    }

    async fn register(&self, key: &str, value: String) -> Result<(), Failure> {
        let mut registrations = self.registrations.lock().await;
        registrations.to_delete.remove(key);
        let previous = registrations.keys.insert(key.to_owned(), value.clone());
        let mut result = self.put(key, &value, registrations.lease).await;
        if result.as_ref().is_err_and(Failure::is_lease_lost) {
            // The keeper has not noticed yet; replacing the lease here puts this key too.
            tracing::warn!(lease = %hex(registrations.lease), "the etcd lease is gone; registering everything again on a new one");
            result = self.renew(&mut registrations).await;
        }
        if result.is_err() {
            // The caller learns that the registration failed: recovery must not bring it back.
            match previous {
                Some(previous) => registrations.keys.insert(key.to_owned(), previous),
                None => registrations.keys.remove(key),
            };
        }
        result
    }

    async fn deregister(&self, key: &str) -> Result<(), Failure> {
        let mut registrations = self.registrations.lock().await;
        registrations.keys.remove(key);
        let deleted = self.delete(key).await;
        if deleted.is_err() {
            registrations.to_delete.insert(key.to_owned());
        }
        deleted
    }

    /// Grants a new lease and puts every registration on it. If a put fails, the new lease is
    /// given up and the old one kept, so that the next attempt starts over.
    async fn renew(&self, registrations: &mut Registrations) -> Result<(), Failure> {
        let lease = self.grant().await?;
        for (key, value) in &registrations.keys {
            if let Err(failure) = self.put(key, value, lease).await {
                let mut leases = self.client.lease_client();
                let _ = tokio::time::timeout(self.config.timeout, leases.revoke(lease)).await;
                return Err(failure);
            }
        }
        tracing::info!(
            old = %hex(registrations.lease),
            new = %hex(lease),
            keys = registrations.keys.len(),
            "registered again on a new etcd lease"
        );
        registrations.lease = lease;
        // The old lease took every key with it, deregistered ones included.
        registrations.to_delete.clear();
        Ok(())
    }

    /// [`Self::renew`], unless someone already replaced the lease `lost`.
    async fn renew_lost(&self, lost: i64) -> Result<(), Failure> {
        let mut registrations = self.registrations.lock().await;
        if registrations.lease != lost {
            return Ok(());
        }
        self.renew(&mut registrations).await
    }

    /// Deletes the keys deregistered while etcd could not be reached, for at most `budget`.
    /// Skipped while a registration holds the lock: the keeper must not wait long, or the
    /// lease could expire.
    async fn delete_pending(&self, budget: Duration) {
        let Ok(mut registrations) = self.registrations.try_lock() else {
            return;
        };
        if registrations.to_delete.is_empty() {
            return;
        }
        let pending: Vec<String> = registrations.to_delete.iter().cloned().collect();
        let _ = tokio::time::timeout(budget, async {
            for key in pending {
                if self.delete(&key).await.is_ok() {
                    registrations.to_delete.remove(&key);
                }
            }
        })
        .await;
    }

    /// Keeps `lease` alive until it is lost or etcd stops answering.
    async fn keep_alive(&self, lease: i64, backoff: &mut Backoff, outage: &mut Outage) -> LeaseEnd {
        let every = Duration::from_millis(u64::try_from(self.ttl_secs).unwrap_or(1) * 1000 / 3);
        // Opening the stream sends the first keep-alive and waits for its answer; retried like
        // any request, so that landing on a stopped node of a cluster is no outage.
        let opened = self
            .retry(|mut client| async move { client.lease_keep_alive(lease).await })
            .await;
        let (mut keeper, mut responses) = match opened {
            Ok(stream) => stream,
            Err(Failure::Etcd(etcd_client::Error::LeaseKeepAliveError(message)))
                if message.contains("not found") =>
            {
                return LeaseEnd::Lost;
            }
            Err(failure) => return LeaseEnd::Unreachable(failure),
        };
        // From here on, a failure is first a broken stream; only failing to open a new one
        // means etcd is unreachable.
        loop {
            backoff.reset();
            if outage.end() {
                tracing::info!(lease = %hex(lease), "etcd answers the lease keep-alive again");
            }
            self.delete_pending(every).await;
            tokio::time::sleep(every).await;
            if let Err(error) = keeper.keep_alive().await {
                return LeaseEnd::Broken(Failure::Etcd(error));
            }
            match tokio::time::timeout(self.config.timeout, responses.message()).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return LeaseEnd::Lost,
                Ok(Ok(None)) => return LeaseEnd::Broken(Failure::Closed),
                Ok(Err(error)) => return LeaseEnd::Broken(Failure::Etcd(error)),
                Err(_) => return LeaseEnd::Broken(Failure::TimedOut(self.config.timeout)),
            }
        }
    }
}

/// Why [`Shared::keep_alive`] stopped.
enum LeaseEnd {
    /// etcd says the lease does not exist any more.
    Lost,
    /// The keep-alive stream could not be opened: etcd cannot be reached.
    Unreachable(Failure),
    /// The keep-alive stream worked, then failed (a node stopped, the connection broke).
    Broken(Failure),
}

/// The keeper: keeps the lease alive, and replaces it when it is lost, until the registry is
/// dropped.
async fn keep_lease_alive(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut outage = Outage::default();
    loop {
        let lease = shared.registrations.lock().await.lease;
        let ended = tokio::select! {
            () = shared.stop.cancelled() => return,
            ended = shared.keep_alive(lease, &mut backoff, &mut outage) => ended,
        };
        match ended {
            LeaseEnd::Lost => {
                tracing::warn!(lease = %hex(lease), "the etcd lease is gone (revoked, or expired while etcd was unreachable); registering everything again on a new one");
                let renewed = tokio::select! {
                    () = shared.stop.cancelled() => return,
                    renewed = shared.renew_lost(lease) => renewed,
                };
                match renewed {
                    // etcd answers, and the new lease needs its first keep-alive within its
                    // TTL: no long backoff now.
                    Ok(()) => backoff.reset(),
                    Err(failure) => {
                        tracing::warn!(error = %failure, "cannot register again on a new etcd lease; retrying");
                    }
                }
            }
            LeaseEnd::Broken(failure) => {
                tracing::debug!(error = %failure, "the etcd lease keep-alive stream broke; opening another");
            }
            LeaseEnd::Unreachable(failure) => {
                if outage.begin() {
                    tracing::warn!(endpoints = %shared.endpoints.join(","), error = %failure, "etcd does not answer the lease keep-alive; the registrations stay while the lease lasts, and come back by themselves if it expires");
                }
            }
        }
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// A subscriber: follows the providers under `prefix` from `revision`, publishing each new set,
/// until its caller stops polling it.
async fn follow(
    shared: &Shared,
    prefix: &str,
    mut providers: Providers,
    mut revision: i64,
    sender: &watch::Sender<Arc<Vec<Instance>>>,
) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut outage = Outage::default();
    loop {
        let ended = watch_from(
            shared,
            prefix,
            revision + 1,
            &mut providers,
            sender,
            &mut backoff,
        )
        .await;
        tracing::debug!(prefix, reason = %ended, "etcd watch ended; reading the providers again");
        // Read the whole prefix again before watching again: that covers whatever changed while
        // the watch was down, compacted revisions included.
        loop {
            tokio::time::sleep(backoff.next_delay()).await;
            match shared.read(prefix).await {
                Ok((kvs, read_at)) => {
                    providers.replace(&kvs);
                    publish(sender, &providers);
                    revision = read_at;
                    if outage.end() {
                        tracing::info!(
                            prefix,
                            providers = kvs.len(),
                            "etcd answers again; providers read again"
                        );
                    }
                    break;
                }
                Err(failure) => {
                    if outage.begin() {
                        let known = sender.borrow().len();
                        tracing::warn!(prefix, error = %failure, known, "etcd unreachable; keeping the last known providers");
                    }
                }
            }
        }
    }
}

/// Why a watch ended.
enum WatchEnd {
    /// etcd cancelled it, for instance because its start revision was compacted.
    Cancelled(String),
    /// The stream failed or could not be opened.
    Failed(Failure),
}

impl fmt::Display for WatchEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled(reason) => write!(f, "cancelled by etcd: {reason}"),
            Self::Failed(failure) => write!(f, "{failure}"),
        }
    }
}

/// Watches `prefix` from revision `start`, applying every change to `providers` and publishing
/// the result, until the watch ends.
async fn watch_from(
    shared: &Shared,
    prefix: &str,
    start: i64,
    providers: &mut Providers,
    sender: &watch::Sender<Arc<Vec<Instance>>>,
    backoff: &mut Backoff,
) -> WatchEnd {
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let opened = shared
        .retry(|mut client| {
            let options = options.clone();
            async move { client.watch(prefix, Some(options)).await }
        })
        .await;
    // The whole stream stays in scope: dropping its request half would end the watch.
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(failure) => return WatchEnd::Failed(failure),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return WatchEnd::Failed(Failure::Closed),
            Err(error) => return WatchEnd::Failed(Failure::Etcd(error)),
        };
        if response.canceled() {
            let reason = match response.compact_revision() {
                0 => response.cancel_reason().to_owned(),
                compacted => format!("revision {start} was compacted (now {compacted})"),
            };
            return WatchEnd::Cancelled(reason);
        }
        if response.created() {
            backoff.reset();
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            changed = true;
            match event.event_type() {
                EventType::Put => providers.put(kv.key(), kv.value()),
                EventType::Delete => providers.remove(kv.key()),
            }
        }
        if changed {
            publish(sender, providers);
        }
    }
}

/// Sends the providers to the subscription if they changed.
fn publish(sender: &watch::Sender<Arc<Vec<Instance>>>, providers: &Providers) {
    let next = providers.list();
    sender.send_if_modified(|current| {
        let changed = **current != next;
        if changed {
            *current = Arc::new(next);
        }
        changed
    });
}

/// The providers of one service by etcd key, as a subscriber last learned them.
#[derive(Debug)]
struct Providers {
    service: ServiceKey,
    by_key: BTreeMap<Vec<u8>, Instance>,
}

impl Providers {
    fn new(service: ServiceKey) -> Self {
        Self {
            service,
            by_key: BTreeMap::new(),
        }
    }

    /// Forgets everything and takes `kvs` as the whole set.
    fn replace(&mut self, kvs: &[KeyValue]) {
        self.by_key.clear();
        for kv in kvs {
            self.put(kv.key(), kv.value());
        }
    }

    /// Applies a put of `key`: an instance of this service is in; anything else is skipped (and
    /// what the key held before is out).
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match Instance::from_json(value) {
            Ok(instance) if instance.key() == self.service => {
                self.by_key.insert(key.to_vec(), instance);
            }
            Ok(instance) => {
                tracing::warn!(key = %String::from_utf8_lossy(key), found = %instance.key(), expected = %self.service, "ignoring a registration of another service");
                self.by_key.remove(key);
            }
            Err(error) => {
                tracing::warn!(key = %String::from_utf8_lossy(key), %error, "ignoring an unreadable registration");
                self.by_key.remove(key);
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        self.by_key.remove(key);
    }

    /// The providers, sorted by address.
    fn list(&self) -> Vec<Instance> {
        let mut list: Vec<Instance> = self.by_key.values().cloned().collect();
        list.sort_by_key(Instance::address);
        list
    }
}

/// Why an etcd operation failed.
#[derive(Debug)]
enum Failure {
    /// etcd or the connection to it said no.
    Etcd(etcd_client::Error),
    /// No answer within the operation timeout.
    TimedOut(Duration),
    /// etcd ended a stream.
    Closed,
}

impl Failure {
    /// Whether etcd refused a put because its lease no longer exists.
    fn is_lease_lost(&self) -> bool {
        matches!(self, Self::Etcd(etcd_client::Error::GRpcStatus(status))
            if status.message().contains("lease not found"))
    }

    fn into_error(self, context: String) -> Error {
        let error = registry_error(format!("{context}: {self}"));
        match self {
            Self::Etcd(source) => error.with_source(source),
            Self::TimedOut(_) | Self::Closed => error,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Etcd(error) => write!(f, "{error}"),
            Self::TimedOut(after) => write!(f, "no answer within {after:?}"),
            Self::Closed => f.write_str("etcd closed the stream"),
        }
    }
}

/// Whether a retry may succeed where `error` failed: the connection failed, a node is down or
/// stopping, there is no leader for the moment. Not: a refusal such as a missing lease, bad
/// arguments or missing permissions.
fn is_transient(error: &etcd_client::Error) -> bool {
    // gRPC codes: 1 cancelled, 2 unknown, 4 deadline exceeded, 10 aborted, 13 internal,
    // 14 unavailable.
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(i32::from(status.code()), 1 | 2 | 4 | 10 | 13 | 14)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// Tracks whether etcd is unreachable, so that each outage is logged once when it starts and
/// once when it ends.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records a failure; `true` if it starts an outage.
    fn begin(&mut self) -> bool {
        let starts = self.since.is_none();
        self.since.get_or_insert_with(Instant::now);
        starts
    }

    /// Records a success; `true` if it ends an outage.
    fn end(&mut self) -> bool {
        self.since.take().is_some()
    }
}

/// Delays between attempts: from `first`, doubling, up to `max`.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            next: first,
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `host:port,host:port` as the URLs the client takes.
fn parse_endpoints(endpoints: &str) -> Result<Vec<String>, Error> {
    let parsed: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(|endpoint| {
            if endpoint.contains("://") {
                endpoint.to_owned()
            } else {
                format!("http://{endpoint}")
            }
        })
        .collect();
    if parsed.is_empty() {
        return Err(registry_error(format!(
            "`{endpoints}` names no etcd endpoint (expected host:port[,host:port…])"
        )));
    }
    Ok(parsed)
}

/// The lease TTL in whole seconds, rounded up so that a registration never outlives its process
/// by less than asked, and at least one.
fn ttl_seconds(ttl: Duration) -> i64 {
    let millis = ttl.as_millis().div_ceil(1000).max(1);
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// A lease id as etcdctl prints it.
fn hex(lease: i64) -> String {
    format!("{lease:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("demo.Calculator").with_version("1.0.0")
    }

    #[test]
    fn providers_apply_puts_and_deletes_sorted_by_address() {
        let mut providers = Providers::new(key());
        let second = Instance::new(&key(), "127.0.0.2", 1);
        let first = Instance::new(&key(), "127.0.0.1", 9);
        providers.put(b"/k/2", second.to_json().as_bytes());
        providers.put(b"/k/1", first.to_json().as_bytes());
        assert_eq!(providers.list(), vec![first.clone(), second.clone()]);

        providers.remove(b"/k/1");
        assert_eq!(providers.list(), vec![second]);
    }

    #[test]
    fn providers_skip_what_they_cannot_use() {
        let mut providers = Providers::new(key());
        let instance = Instance::new(&key(), "127.0.0.1", 1);
        providers.put(b"/k/1", instance.to_json().as_bytes());
        // An unreadable value replaces a good one: the key no longer names a provider.
        providers.put(b"/k/1", b"{not json");
        assert!(providers.list().is_empty());

        let other = Instance::new(&key().with_version("2.0.0"), "127.0.0.1", 2);
        providers.put(b"/k/2", other.to_json().as_bytes());
        assert!(providers.list().is_empty());
    }

    #[test]
    fn the_ttl_is_whole_seconds_rounded_up() {
        assert_eq!(ttl_seconds(Duration::from_millis(0)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(200)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn endpoints_become_urls() {
        assert_eq!(
            parse_endpoints("127.0.0.1:2379, 127.0.0.1:2479,").unwrap(),
            vec!["http://127.0.0.1:2379", "http://127.0.0.1:2479"]
        );
        assert_eq!(
            parse_endpoints("http://10.0.0.1:2379").unwrap(),
            vec!["http://10.0.0.1:2379"]
        );
        assert!(parse_endpoints(" , ").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay()).collect();
        let millis: Vec<_> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), RETRY_FIRST);
    }

    #[test]
    fn an_outage_is_reported_once() {
        let mut outage = Outage::default();
        assert!(!outage.end());
        assert!(outage.begin());
        assert!(!outage.begin());
        assert!(outage.end());
        assert!(!outage.end());
    }
}
