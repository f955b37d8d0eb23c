//! The ZooKeeper registry: an ephemeral node per registration under persistent parents, a
//! children watch per subscription, and a session that heals itself.
//!
//! # Layout
//!
//! A registration is the node `/tether/{service}/{version}/{group}/{providers|consumers}/{id}`
//! (see `path.rs` and `docs/registry.md`), EPHEMERAL, holding the instance's JSON. Its parents
//! are PERSISTENT and made on first use by whoever needs them first; two processes making the
//! same parent at once is not an error.
//!
//! # One session, three kinds of task
//!
//! A registry holds one ZooKeeper session. The `zookeeper-client` crate keeps it connected by
//! itself, moving to another server of the ensemble when one goes, for as long as the session
//! lives: ephemeral nodes and watches survive that untouched. Around it, every task below is
//! stopped when the registry is dropped, and dropping the last handle of a session closes it,
//! so the server deletes its ephemeral nodes at once.
//!
//! - The **supervisor** follows the session's state and logs outages. Once the session is over
//!   (the server said it expired, or the client heard nothing from any server for 1.4 times the
//!   session timeout), it opens a new one, retrying with a backoff from 100 ms to 2 s, and
//!   publishes it in a `watch` channel the other tasks wait on. It first tries to resume the old
//!   session: a server that was down may still hold it, with its nodes.
//! - A **keeper** per registration makes the ephemeral node and watches it; whenever the watch
//!   fires (the node went, its data changed, the session ended) it makes sure the node is there
//!   again, in the current session and with its JSON. A node found held by another session (this
//!   process's expired one, which the server has not dropped yet) is left alone until it goes.
//! - A **follower** per subscription reads the providers (the children of `…/providers` and each
//!   child's data) with a children watch, publishes the set, and reads again each time the watch
//!   fires, arming a new one: ZooKeeper watches fire once. After a session expiry it reads again
//!   in the new session.
//!
//! While the session is disconnected or being replaced, followers publish nothing: subscribers
//! keep the last set they were given.

use std::{collections::HashMap, fmt, future::Future, sync::Arc, time::Duration};

use futures_util::future::join_all;
use tokio::{
    sync::{Mutex, oneshot, watch},
    task::JoinHandle,
    time::{Instant, timeout, timeout_at},
};
use tokio_util::sync::CancellationToken;
use zookeeper_client::{
    self as zk, Acls, Client, CreateMode, CreateOptions, OneshotWatcher, SessionInfo, SessionState,
};

use super::{
    BoxFuture, Instance, Registry, RegistryConfig, Role, Subscription, path, registry_error,
};
use crate::{error::Error, service::ServiceKey};

/// Registrations: gone with the session that made them.
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
/// Their parents: there for every process, whoever made them.
const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());

/// How many create-then-check rounds one attempt to hold a node makes before it gives up and
/// backs off: each round only repeats when another client changed the node in between.
const HOLD_ROUNDS: usize = 4;

/// A registry in a ZooKeeper ensemble; see the module documentation of `registry::zookeeper`
/// for the design, and `docs/registry.md` for the nodes it writes.
///
/// Clones share one session and its registrations. Dropping the last clone stops its tasks and
/// closes the session: its ephemeral nodes go away at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), tether::Error> {
/// use std::time::Duration;
///
/// use tether::registry::{Instance, Registry, RegistryConfig, Role, ZooKeeperRegistry};
///
/// let mut config = RegistryConfig::default();
/// config.ttl = Duration::from_secs(4); // the session timeout
/// let registry = ZooKeeperRegistry::connect("127.0.0.1:2181,127.0.0.1:2182", config).await?;
/// let key = tether::ServiceKey::new("demo.Calculator").with_version("1.0.0");
/// registry
///     .register(Role::Provider, Instance::new(&key, "127.0.0.1", 20880))
///     .await?;
/// let providers = registry.subscribe(&key).await?.providers();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZooKeeperRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Stops every task of the registry; cancelled on drop.
    stop: CancellationToken,
    /// The keeper of each registration, by node path. A `tokio` mutex: register and deregister
    /// hold it across their round trips, so that two calls on one path cannot interleave.
    registrations: Mutex<HashMap<String, Keeper>>,
}

/// What every task of a registry shares.
struct Shared {
    endpoints: String,
    config: RegistryConfig,
    /// The session in use. The supervisor replaces it after an expiry; a task that finds it
    /// over waits here for the next one.
    session: watch::Sender<Client>,
}

/// The task keeping one registration's node in place.
struct Keeper {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Stops the keeper and waits until it has: no request of its own is sent after this.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The tasks hold the session; once they are gone, the session closes.
        self.stop.cancel();
    }
}

impl fmt::Debug for ZooKeeperRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = self.inner.shared.session.borrow().clone();
        f.debug_struct("ZooKeeperRegistry")
            .field("endpoints", &self.inner.shared.endpoints)
            .field("session", &format_args!("{}", client.session_id()))
            .field("state", &client.state())
            .finish_non_exhaustive()
    }
}

impl ZooKeeperRegistry {
    /// Opens a session with the ensemble at `endpoints` (`host:port,host:port…`), asking for
    /// `config.ttl` as the session timeout (the server may clamp it to its own
    /// `minSessionTimeout`..`maxSessionTimeout`). Connecting, and each later operation, may take
    /// `config.timeout`.
    ///
    /// Fails if no server of the ensemble gives a session within that time.
    pub async fn connect(endpoints: &str, config: RegistryConfig) -> Result<Self, Error> {
        let endpoints = endpoints.trim().to_owned();
        if endpoints.is_empty() {
            return Err(registry_error(
                "no ZooKeeper address given (expected host:port[,host:port…])",
            ));
        }
        // Retried until the timeout: an ensemble electing a leader refuses sessions for a while.
        let deadline = Instant::now() + config.timeout;
        let mut backoff = Backoff::new();
        let client = loop {
            let error = match timeout_at(deadline, open_session(&endpoints, &config, None)).await {
                Ok(Ok(client)) => break client,
                Ok(Err(error)) => error,
                Err(_) => zk::Error::Timeout,
            };
            let delay = backoff.next_delay();
            if Instant::now() + delay >= deadline {
                let action = format!("cannot open a session within {:?}", config.timeout);
                return Err(failure(action, &endpoints, error));
            }
            tokio::time::sleep(delay).await;
        };
        log_session_timeout(&client, &config);
        tracing::debug!(%endpoints, session = %client.session_id(), "ZooKeeper session opened");
        let shared = Arc::new(Shared {
            endpoints,
            config,
            session: watch::Sender::new(client),
        });
        let stop = CancellationToken::new();
        spawn(stop.clone(), supervise(shared.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                stop,
                registrations: Mutex::default(),
            }),
        })
    }
}

impl Shared {
    /// The session to use now, waiting at most the operation timeout for a new one if the
    /// current one is over.
    async fn session_now(&self) -> Result<Client, Error> {
        let mut sessions = self.session.subscribe();
        timeout(self.config.timeout, live_session(&mut sessions))
            .await
            .map_err(|_| {
                registry_error(format!(
                    "no ZooKeeper session with {}: the last one ended and no new one opened \
                     within {:?}",
                    self.endpoints, self.config.timeout
                ))
            })
    }
}

/// The current session once it is not over: after an expiry, the supervisor's next one.
async fn live_session(sessions: &mut watch::Receiver<Client>) -> Client {
    loop {
        let client = sessions.borrow_and_update().clone();
        if !client.state().is_terminated() {
            return client;
        }
        if sessions.changed().await.is_err() {
            // The registry is gone; its tasks are being stopped.
            return std::future::pending().await;
        }
    }
}

/// Tries each server of `endpoints` once, resuming `session` if given, within the operation
/// timeout.
async fn open_session(
    endpoints: &str,
    config: &RegistryConfig,
    session: Option<SessionInfo>,
) -> Result<Client, zk::Error> {
    // Fail eagerly: one pass over the servers, then the caller's backoff decides when to try
    // again.
    let mut connector = Client::connector()
        .with_session_timeout(config.ttl)
        .with_fail_eagerly();
    if let Some(session) = session {
        connector = connector.with_session(session);
    }
    timeout(config.timeout, connector.connect(endpoints))
        .await
        .unwrap_or(Err(zk::Error::Timeout))
}

fn log_session_timeout(client: &Client, config: &RegistryConfig) {
    if client.session_timeout() != config.ttl {
        // The server clamps the timeout to its own bounds; crashed processes then linger for
        // this long instead of the configured TTL.
        tracing::info!(
            requested = ?config.ttl,
            granted = ?client.session_timeout(),
            "ZooKeeper session timeout differs from the registry TTL"
        );
    }
}

/// A registry error naming the endpoints and what failed.
fn failure(action: impl fmt::Display, endpoints: &str, error: zk::Error) -> Error {
    registry_error(format!("{action} on ZooKeeper {endpoints}: {error}")).with_source(error)
}

/// A registry error for an operation that got no answer in time.
fn no_answer(action: impl fmt::Display, shared: &Shared) -> Error {
    registry_error(format!(
        "{action} on ZooKeeper {}: no answer within {:?}",
        shared.endpoints, shared.config.timeout
    ))
}

/// Runs `task` until `stop` is cancelled.
fn spawn(
    stop: CancellationToken,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        stop.run_until_cancelled_owned(task).await;
    })
}

// -------------------------------------------------------------------------------------------------
// The supervisor.
// -------------------------------------------------------------------------------------------------

/// Replaces the session each time it ends, until the registry is dropped.
async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    loop {
        let client = shared.session.borrow().clone();
        let (end, warned) = wait_for_end(&shared, &client).await;
        let mut resume = Some(client.session().clone());
        drop(client);
        if warned {
            tracing::warn!(endpoints = %shared.endpoints, state = %end, "ZooKeeper session over; opening a new one and restoring the registrations and watches");
        } else {
            tracing::warn!(endpoints = %shared.endpoints, state = %end, "ZooKeeper session over; opening a new one and restoring the registrations and watches; subscribers keep their last known providers meanwhile");
        }
        let lost = Instant::now();
        loop {
            match open_session(&shared.endpoints, &shared.config, resume.clone()).await {
                Ok(client) => {
                    tracing::info!(endpoints = %shared.endpoints, session = %client.session_id(), resumed = resume.is_some(), after = ?lost.elapsed(), "ZooKeeper session open again");
                    log_session_timeout(&client, &shared.config);
                    shared.session.send_replace(client);
                    backoff.reset();
                    break;
                }
                // The old session is gone for good: open a fresh one, right away.
                Err(zk::Error::SessionExpired) if resume.is_some() => resume = None,
                Err(error) => {
                    tracing::debug!(endpoints = %shared.endpoints, %error, "cannot open a ZooKeeper session yet");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Follows `client`'s state until the session is over, warning once when it loses its
/// connection. Returns the final state, and whether a warning was given.
async fn wait_for_end(shared: &Shared, client: &Client) -> (SessionState, bool) {
    let mut states = client.state_watcher();
    let mut state = client.state();
    let mut outage: Option<Instant> = None;
    loop {
        match state {
            SessionState::Disconnected if outage.is_none() => {
                outage = Some(Instant::now());
                tracing::warn!(endpoints = %shared.endpoints, session = %client.session_id(), "lost the connection to ZooKeeper; reconnecting; subscribers keep their last known providers");
            }
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                if let Some(since) = outage.take() {
                    tracing::info!(endpoints = %shared.endpoints, session = %client.session_id(), after = ?since.elapsed(), "reconnected to ZooKeeper in the same session; registrations and watches intact");
                }
            }
            state if state.is_terminated() => return (state, outage.is_some()),
            _ => {}
        }
        state = states.changed().await;
    }
}

// -------------------------------------------------------------------------------------------------
// Registrations.
// -------------------------------------------------------------------------------------------------

/// How a keeper found its node.
enum Held {
    /// Ours, with our JSON; the watcher fires when that changes.
    Own(OneshotWatcher),
    /// Another session's (`owner`): left alone, and made again once the watcher says it went.
    Foreign { owner: i64, watcher: OneshotWatcher },
}

/// Makes sure the node at `path` exists, and is ours with `data` if it can be: creates it (and
/// its parents), or replaces our own node whose data differs.
async fn hold(client: &Client, path: &str, data: &[u8]) -> Result<Held, zk::Error> {
    let session = client.session_id().0;
    for _ in 0..HOLD_ROUNDS {
        match client.create(path, data, &EPHEMERAL).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(zk::Error::NoNode) => {
                let parent = path.rsplit_once('/').map_or("/", |(parent, _)| parent);
                client.mkdir(parent, &PERSISTENT).await?;
                continue;
            }
            Err(error) => return Err(error),
        }
        let (stored, stat, watcher) = match client.get_and_watch_data(path).await {
            Ok(found) => found,
            // Gone between the two calls: make it again.
            Err(zk::Error::NoNode) => continue,
            Err(error) => return Err(error),
        };
        if stat.ephemeral_owner != session {
            return Ok(Held::Foreign {
                owner: stat.ephemeral_owner,
                watcher,
            });
        }
        if stored == data {
            return Ok(Held::Own(watcher));
        }
        // Registered again with other content. Replace the node in one transaction, so that a
        // subscriber reading between the two steps never finds the provider missing.
        drop(watcher);
        let mut replace = client.new_multi_writer();
        replace.add_delete(path, Some(stat.version))?;
        replace.add_create(path, data, &EPHEMERAL)?;
        match replace.commit().await.map_err(zk::Error::from) {
            Ok(_) | Err(zk::Error::NoNode | zk::Error::BadVersion | zk::Error::NodeExists) => {}
            Err(error) => return Err(error),
        }
    }
    // Another client keeps changing the node under us; let the caller back off.
    Err(zk::Error::RuntimeInconsistent)
}

/// Keeps the node at `path` in place until stopped, reporting how the first attempt went on
/// `first`.
async fn keep(
    shared: Arc<Shared>,
    path: String,
    data: Vec<u8>,
    first: oneshot::Sender<Result<(), Error>>,
) {
    let mut first = Some(first);
    let mut sessions = shared.session.subscribe();
    let mut backoff = Backoff::new();
    let mut held_in = None;
    loop {
        let client = live_session(&mut sessions).await;
        let session = client.session_id();
        let held = timeout(shared.config.timeout, hold(&client, &path, &data)).await;
        let (watcher, foreign) = match held {
            Ok(Ok(held)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                } else if held_in != Some(session) {
                    tracing::info!(%path, %session, "registration restored in a new ZooKeeper session");
                }
                held_in = Some(session);
                backoff.reset();
                match held {
                    Held::Own(watcher) => (watcher, false),
                    Held::Foreign { owner, watcher } => {
                        tracing::info!(%path, owner = %zk::SessionId(owner), "the node is held by another session, maybe an expired one of this process; making it again when it goes");
                        (watcher, true)
                    }
                }
            }
            // A session that just ended fails what was under way: try again in the next one,
            // which the supervisor is opening (and logging).
            _ if client.state().is_terminated() => {
                tracing::debug!(%path, "registration interrupted by the end of the session");
                continue;
            }
            failed => {
                let action = format!("cannot register {path}");
                let error = match failed {
                    Ok(Err(error)) => failure(&action, &shared.endpoints, error),
                    _ => no_answer(&action, &shared),
                };
                match first.take() {
                    // The caller of `register` hears of it and stops this task.
                    Some(first) => {
                        let _ = first.send(Err(error));
                    }
                    None => tracing::warn!(%error, "registration not restored yet; retrying"),
                }
                drop(client);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        drop(client);
        // Fires when the node changes or goes, or when the session ends: then look again.
        let event = watcher.changed().await;
        if event.event_type == zk::EventType::NodeDeleted && !foreign {
            tracing::info!(%path, "registration node deleted by another client; making it again");
        } else {
            tracing::debug!(%path, ?event, "registration node event");
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Subscriptions.
// -------------------------------------------------------------------------------------------------

/// The providers in `dir` sorted by address, and a watch on its children. Makes `dir` if
/// missing, so that the watch is armed for the first provider.
async fn read_providers(
    client: &Client,
    dir: &str,
    key: &ServiceKey,
) -> Result<(Vec<Instance>, OneshotWatcher), zk::Error> {
    let (children, watcher) = match client.list_and_watch_children(dir).await {
        Err(zk::Error::NoNode) => {
            client.mkdir(dir, &PERSISTENT).await?;
            client.list_and_watch_children(dir).await?
        }
        listed => listed?,
    };
    let paths: Vec<String> = children
        .iter()
        .map(|child| format!("{dir}/{child}"))
        .collect();
    // Each request is sent when it is made: the reads go out back to back.
    let reads = join_all(paths.iter().map(|path| client.get_data(path))).await;
    let mut providers = Vec::with_capacity(paths.len());
    for (path, read) in paths.iter().zip(reads) {
        let data = match read {
            Ok((data, _)) => data,
            // Gone since the listing; the children watch has fired for it.
            Err(zk::Error::NoNode) => continue,
            Err(error) => return Err(error),
        };
        match Instance::from_json(&data) {
            Ok(instance) if instance.key() == *key => providers.push(instance),
            Ok(instance) => {
                tracing::warn!(%path, found = %instance.key(), "ignoring a registration of another service");
            }
            Err(error) => tracing::warn!(%path, %error, "ignoring an unreadable registration"),
        }
    }
    providers.sort_by_key(Instance::address);
    Ok((providers, watcher))
}

/// Keeps `sender` up to date with the providers in `dir` until nobody listens.
async fn follow(
    shared: Arc<Shared>,
    key: ServiceKey,
    dir: String,
    sender: watch::Sender<Arc<Vec<Instance>>>,
    mut watcher: OneshotWatcher,
) {
    let mut sessions = shared.session.subscribe();
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        tokio::select! {
            event = watcher.changed() => tracing::debug!(service = %key, ?event, "providers event"),
            () = sender.closed() => return,
        }
        // Read again, and arm the next watch, until that works.
        watcher = loop {
            let client = tokio::select! {
                client = live_session(&mut sessions) => client,
                () = sender.closed() => return,
            };
            let read = timeout(shared.config.timeout, read_providers(&client, &dir, &key)).await;
            let error = match read {
                Ok(Ok((providers, watcher))) => {
                    if failing {
                        tracing::info!(service = %key, providers = providers.len(), "providers readable again");
                    }
                    failing = false;
                    backoff.reset();
                    sender.send_if_modified(|current| {
                        let changed = **current != providers;
                        if changed {
                            *current = Arc::new(providers);
                        }
                        changed
                    });
                    break watcher;
                }
                // The session ended under the read: read again in the next one, which the
                // supervisor is opening (and logging).
                _ if client.state().is_terminated() => continue,
                Ok(Err(error)) => failure("cannot read the providers", &shared.endpoints, error),
                Err(_) => no_answer("cannot read the providers", &shared),
            };
            if !failing {
                failing = true;
                let known = sender.borrow().len();
                tracing::warn!(service = %key, %error, known, "keeping the last known providers; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = sender.closed() => return,
            }
        };
    }
}

impl Registry for ZooKeeperRegistry {
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let shared = &self.inner.shared;
            let path = path::instance_path(role, &instance);
            let data = instance.to_json().into_bytes();
            let mut registrations = self.inner.registrations.lock().await;
            if let Some(previous) = registrations.remove(&path) {
                previous.stop().await;
            }
            let (first, outcome) = oneshot::channel();
            let stop = self.inner.stop.child_token();
            let task = spawn(
                stop.clone(),
                keep(shared.clone(), path.clone(), data, first),
            );
            let keeper = Keeper { stop, task };
            let outcome = match timeout(shared.config.timeout, outcome).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(registry_error("the registration task stopped")),
                Err(_) => Err(no_answer(format_args!("cannot register {path}"), shared)),
            };
            match outcome {
                Ok(()) => {
                    registrations.insert(path, keeper);
                    Ok(())
                }
                Err(error) => {
                    keeper.stop().await;
                    Err(error)
                }
            }
        })
    }

    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>> {
        let path = path::instance_path(role, instance);
        Box::pin(async move {
            let shared = &self.inner.shared;
            let mut registrations = self.inner.registrations.lock().await;
            // Stopped first, so that it cannot make the node again after the delete.
            if let Some(keeper) = registrations.remove(&path) {
                keeper.stop().await;
            }
            let client = shared.session_now().await?;
            match timeout(shared.config.timeout, client.delete(&path, None)).await {
                Ok(Ok(()) | Err(zk::Error::NoNode)) => Ok(()),
                Ok(Err(error)) => Err(failure(
                    format_args!("cannot delete {path}"),
                    &shared.endpoints,
                    error,
                )),
                Err(_) => Err(no_answer(format_args!("cannot delete {path}"), shared)),
            }
        })
    }

    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>> {
        let key = key.clone();
        Box::pin(async move {
            let shared = &self.inner.shared;
            let dir = path::role_dir(&key, Role::Provider);
            let client = shared.session_now().await?;
            let action = format!("cannot read the providers in {dir}");
            let (providers, watcher) =
                match timeout(shared.config.timeout, read_providers(&client, &dir, &key)).await {
                    Ok(Ok(read)) => read,
                    Ok(Err(error)) => return Err(failure(&action, &shared.endpoints, error)),
                    Err(_) => return Err(no_answer(&action, shared)),
                };
            let (sender, receiver) = watch::channel(Arc::new(providers));
            spawn(
                self.inner.stop.clone(),
                follow(shared.clone(), key.clone(), dir, sender, watcher),
            );
            Ok(Subscription::new(key, receiver))
        })
    }
}

// -------------------------------------------------------------------------------------------------
// Backoff.
// -------------------------------------------------------------------------------------------------

/// Delays between retries: 100 ms, doubling up to 2 s, each shortened by up to a fifth at
/// random so that the processes that lost one server do not all come back at once.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next retry.
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay.mul_f64(1.0 - 0.2 * fastrand::f64())
    }

    /// A success: the next failure waits the shortest delay again.
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        let nominal = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (delay, nominal) in delays.iter().zip(nominal) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *delay <= nominal && *delay >= nominal.mul_f64(0.8),
                "{delay:?} vs {nominal:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::FIRST);
    }
}
