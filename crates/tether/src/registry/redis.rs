//! The Redis registry: keys with a TTL their owner refreshes, change notification by pub/sub, and
//! a periodic full re-read so that nothing missed leaves a subscriber stale.
//!
//! # Layout
//!
//! Each registration is the string key `path::instance_path(role, instance)` (for instance
//! `/tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:20880`) holding the instance's JSON, set
//! with `SET key json PX ttl`. After every change the writer publishes to the channel named
//! after the role's directory (`/tether/demo.Calculator/1.0.0/-/providers`) one of
//! `registered {id}`, `deregistered {id}` or `restored {id}`, `{id}` being [`Instance::id`].
//!
//! # Keeping registrations alive
//!
//! One refresher task per registry rewrites every registration of this process every third of
//! the TTL with `SET key json PX ttl GET`. The previous value that `GET` returns tells whether the
//! key was still there: if it was missing (Redis restarted empty, or the key expired while this
//! process could not reach Redis) or held something else, the refresher has just written it
//! back and publishes `restored`.
//! A failed round is retried with a backoff (100 ms doubling to 2 s, at most the refresh period)
//! instead of a whole period later, so registrations are back soon after Redis is. A process
//! that crashes stops refreshing and its keys expire after the TTL. Registering, deregistering
//! and refreshing take one lock, so a refresh never re-creates a key deregistered meanwhile.
//!
//! # Following providers
//!
//! [`Registry::subscribe`] opens a pub/sub connection of its own, subscribes to the providers
//! channel, and only then reads the current set (`SCAN MATCH {dir}/* COUNT 100`, then `MGET`), so
//! that no change falls between the read and the subscription. A task then reads the whole set
//! again on every message and every [`RegistryConfig::resync_interval`]: pub/sub is
//! fire-and-forget (a message published while the subscriber reconnects is lost) and an expired
//! key publishes nothing, so the periodic read is what bounds staleness; a crashed provider goes
//! within TTL + resync interval.
//!
//! # Losing Redis
//!
//! Commands go through one multiplexed connection that is dropped after any failure that is not
//! a reply from the server (a reset, a timeout) and dialled again by the next command; every
//! command is bounded by [`RegistryConfig::timeout`]. The pub/sub connection is pinged on every
//! re-read and re-dialled with a backoff (100 ms doubling to 2 s) when it closes or does not
//! answer. While Redis cannot be reached a subscriber keeps the set it last read and says so
//! once in the log.
//!
//! A Redis restarted without persistence comes back empty, and its owners write their keys back
//! within a third of the TTL. So for one TTL after a subscriber regains contact with Redis, it
//! withholds removals: providers that appear show at once, a provider whose `deregistered`
//! message arrives goes at once, and the others that the reads lack go when the window ends, as
//! crashed providers would. Consumers thus keep calling their providers through a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, StreamExt};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
    aio::{MultiplexedConnection, PubSubSink, PubSubStream},
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

/// How many keys each `SCAN` step asks for.
const SCAN_COUNT: usize = 100;
/// The first delay before retrying after a failure (a refresh round, a pub/sub connection).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The most messages already received that one re-read answers.
const MAX_BATCHED_MESSAGES: usize = 1000;

/// What a message on a role's channel says happened, followed by a space and the instance id.
const REGISTERED: &str = "registered";
const DEREGISTERED: &str = "deregistered";
const RESTORED: &str = "restored";

/// A registry in a Redis server: `redis://host:port`.
///
/// Each registration is a key with a TTL (see [`RegistryConfig::ttl`]) that this registry
/// refreshes every third of the TTL until it is deregistered or the registry is dropped.
/// Subscribers follow a pub/sub channel per service and re-read the whole provider set every
/// [`RegistryConfig::resync_interval`]. `docs/registry.md` lists the keys, values and messages.
///
/// Dropping the registry stops its tasks and deletes its keys, best effort; keys it could not
/// delete expire after the TTL.
///
/// ```no_run
/// # async fn demo() -> Result<(), tether::Error> {
/// use tether::registry::{RedisRegistry, RegistryConfig};
///
/// let registry = RedisRegistry::connect("127.0.0.1:6379", RegistryConfig::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisRegistry {
    shared: Arc<Shared>,
    /// Cancelled on drop: stops the refresher and every subscription task.
    stop: CancellationToken,
}

/// What the registry and its tasks share.
#[derive(Debug)]
struct Shared {
    config: RegistryConfig,
    commands: Commands,
    /// This process's registrations by key. Held across the Redis commands of a registration,
    /// a deregistration or a refresh round, so that they never interleave.
    own: Mutex<BTreeMap<String, Registration>>,
}

/// One registration of this process, as written.
#[derive(Debug, Clone)]
struct Registration {
    /// The role's channel, where changes are announced.
    channel: String,
    /// [`Instance::id`], named in the messages.
    id: String,
    json: String,
}

impl RedisRegistry {
    /// Connects to the Redis server at `endpoint` (`host:port`, or `redis://host:port`), within
    /// `config.timeout`, and starts the task that refreshes registrations.
    pub async fn connect(endpoint: &str, config: RegistryConfig) -> Result<Self, Error> {
        let endpoint = endpoint.trim();
        let address = endpoint.strip_prefix("redis://").unwrap_or(endpoint);
        let address = address.trim_end_matches('/');
        if address.is_empty() || address.contains(',') {
            return Err(registry_error(format!(
                "`{endpoint}` is not one Redis address (host:port)"
            )));
        }
        let client = Client::open(format!("redis://{address}/")).map_err(|e| {
            registry_error(format!("`{endpoint}` is not a Redis address")).with_source(e)
        })?;
        let commands = Commands {
            endpoint: address.to_owned(),
            client,
            timeout: config.timeout,
            connection: Mutex::default(),
            generations: AtomicU64::new(0),
        };
        // Fail now, with the reason, rather than on the first registration.
        commands
            .run::<String>("the first PING", &redis::cmd("PING"))
            .await?;
        let shared = Arc::new(Shared {
            config,
            commands,
            own: Mutex::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(refresh(shared.clone(), stop.clone()));
        Ok(Self { shared, stop })
    }

    /// The Redis server, as `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.shared.commands.endpoint
    }
}

impl Drop for RedisRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
        // Best effort, and only inside a runtime: keys left behind expire after the TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { shared.withdraw_all().await });
        }
    }
}

impl Registry for RedisRegistry {
    fn register(&self, role: Role, instance: Instance) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let key = path::instance_path(role, &instance);
            let registration = Registration {
                channel: path::role_dir(&instance.key(), role),
                id: instance.id(),
                json: instance.to_json(),
            };
            let mut own = self.shared.own.lock().await;
            let mut pipeline = redis::pipe();
            pipeline
                .cmd("SET")
                .arg(&key)
                .arg(&registration.json)
                .arg("PX")
                .arg(self.shared.ttl_millis())
                .ignore()
                .cmd("PUBLISH")
                .arg(&registration.channel)
                .arg(format!("{REGISTERED} {}", registration.id))
                .ignore();
            self.shared
                .commands
                .run::<()>(&format!("registering {key}"), &pipeline)
                .await?;
            tracing::debug!(%key, "registered in Redis");
            own.insert(key, registration);
            Ok(())
        })
    }

    fn deregister(&self, role: Role, instance: &Instance) -> BoxFuture<'_, Result<(), Error>> {
        let key = path::instance_path(role, instance);
        let channel = path::role_dir(&instance.key(), role);
        let id = instance.id();
        Box::pin(async move {
            let mut own = self.shared.own.lock().await;
            // Forgotten even if Redis cannot be told: the key then expires after the TTL.
            own.remove(&key);
            let mut pipeline = redis::pipe();
            pipeline
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("PUBLISH")
                .arg(&channel)
                .arg(format!("{DEREGISTERED} {id}"))
                .ignore();
            self.shared
                .commands
                .run::<()>(&format!("deregistering {key}"), &pipeline)
                .await?;
            tracing::debug!(%key, "deregistered from Redis");
            Ok(())
        })
    }

    fn subscribe(&self, key: &ServiceKey) -> BoxFuture<'_, Result<Subscription, Error>> {
        let key = key.clone();
        Box::pin(async move {
            let channel = path::role_dir(&key, Role::Provider);
            // Listen first, then read: a change made in between is announced to us.
            let (sink, messages) = self.shared.listen(&channel).await?;
            let current = self.shared.read_providers(&key).await?;
            let (sender, receiver) = watch::channel(Arc::new(current));
            let follower = Follower {
                shared: self.shared.clone(),
                key: key.clone(),
                channel,
                providers: sender,
                reachable: true,
                lost_contact: false,
                withhold_removals_until: None,
            };
            tokio::spawn(follower.run(Some((sink, messages)), self.stop.child_token()));
            Ok(Subscription::new(key, receiver))
        })
    }
}

impl Shared {
    fn ttl_millis(&self) -> u64 {
        u64::try_from(self.config.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Rewrites every registration of this process with its TTL, and announces those that had
    /// to be re-created.
    async fn refresh_all(&self) -> Result<(), Error> {
        let own = self.own.lock().await;
        if own.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl_millis();
        let mut pipeline = redis::pipe();
        for (key, registration) in own.iter() {
            pipeline
                .cmd("SET")
                .arg(key)
                .arg(&registration.json)
                .arg("PX")
                .arg(ttl)
                .arg("GET");
        }
        let previous: Vec<Option<Vec<u8>>> = self
            .commands
            .run("refreshing the registrations", &pipeline)
            .await?;
        let mut announce = redis::pipe();
        for ((key, registration), previous) in own.iter().zip(previous) {
            if previous.as_deref() != Some(registration.json.as_bytes()) {
                tracing::info!(%key, "registration restored in Redis");
                announce
                    .cmd("PUBLISH")
                    .arg(&registration.channel)
                    .arg(format!("{RESTORED} {}", registration.id))
                    .ignore();
            }
        }
        if !announce.is_empty() {
            self.commands
                .run::<()>("announcing restored registrations", &announce)
                .await?;
        }
        Ok(())
    }

    /// Deletes every registration of this process and announces it; for the registry's drop.
    async fn withdraw_all(&self) {
        let own = std::mem::take(&mut *self.own.lock().await);
        if own.is_empty() {
            return;
        }
        let mut pipeline = redis::pipe();
        for (key, registration) in &own {
            pipeline
                .cmd("DEL")
                .arg(key)
                .ignore()
                .cmd("PUBLISH")
                .arg(&registration.channel)
                .arg(format!("{DEREGISTERED} {}", registration.id))
                .ignore();
        }
        if let Err(error) = self
            .commands
            .run::<()>("withdrawing the registrations", &pipeline)
            .await
        {
            tracing::debug!(%error, "registrations left to expire");
        }
    }

    /// A pub/sub connection subscribed to `channel`.
    async fn listen(&self, channel: &str) -> Result<(PubSubSink, PubSubStream), Error> {
        let endpoint = &self.commands.endpoint;
        let subscribed = async {
            let mut pubsub = self.commands.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub.split())
        };
        match tokio::time::timeout(self.config.timeout, subscribed).await {
            Ok(Ok(split)) => Ok(split),
            Ok(Err(error)) => Err(registry_error(format!(
                "Redis at {endpoint}: cannot subscribe to {channel}"
            ))
            .with_source(error)),
            Err(_) => Err(registry_error(format!(
                "Redis at {endpoint}: subscribing to {channel} took more than {:?}",
                self.config.timeout
            ))),
        }
    }

    /// The providers of `key` in Redis now, sorted by address. Entries that do not parse, or
    /// whose service is not `key`, are skipped with a warning.
    async fn read_providers(&self, key: &ServiceKey) -> Result<Vec<Instance>, Error> {
        let dir = path::role_dir(key, Role::Provider);
        // Segments are percent-encoded, so `dir` holds no glob character.
        let pattern = format!("{dir}/*");
        // SCAN may return a key twice; the set keeps one.
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, batch): (u64, Vec<Vec<u8>>) =
                self.commands.run("listing the providers", &scan).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        let mut get = redis::cmd("MGET");
        get.arg(&keys);
        let values: Vec<Option<Vec<u8>>> = self.commands.run("reading the providers", &get).await?;
        let mut providers = Vec::with_capacity(values.len());
        for (stored_key, value) in keys.iter().zip(values) {
            // Expired between SCAN and MGET.
            let Some(json) = value else { continue };
            let stored_key = String::from_utf8_lossy(stored_key);
            match Instance::from_json(&json) {
                Ok(instance) if instance.key() == *key => providers.push(instance),
                Ok(instance) => tracing::warn!(
                    key = %stored_key,
                    service = %instance.key(),
                    "ignoring a registration of another service"
                ),
                Err(error) => {
                    tracing::warn!(key = %stored_key, %error, "ignoring an unreadable registration")
                }
            }
        }
        providers.sort_by_key(Instance::address);
        Ok(providers)
    }
}

/// Keeps registrations alive: every third of the TTL, or sooner after a failed round.
async fn refresh(shared: Arc<Shared>, stop: CancellationToken) {
    let period = (shared.config.ttl / 3).max(Duration::from_millis(1));
    let mut backoff = Backoff::new(period.min(BACKOFF_MAX));
    let mut next = Instant::now() + period;
    let mut healthy = true;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        match shared.refresh_all().await {
            Ok(()) => {
                if !healthy {
                    let endpoint = &shared.commands.endpoint;
                    tracing::info!(%endpoint, "refreshing registrations in Redis again");
                    healthy = true;
                }
                backoff.reset();
                next = Instant::now() + period;
            }
            Err(error) => {
                // Once per outage: the next rounds fail the same way.
                if healthy {
                    let error = describe(&error);
                    tracing::warn!(%error, "cannot refresh registrations in Redis; retrying");
                    healthy = false;
                }
                next = Instant::now() + backoff.next_delay();
            }
        }
    }
}

/// One subscription's task: keeps the provider set up to date until nobody listens or the
/// registry is dropped.
struct Follower {
    shared: Arc<Shared>,
    key: ServiceKey,
    channel: String,
    providers: watch::Sender<Arc<Vec<Instance>>>,
    /// Whether the last contact with Redis succeeded; a warning marks each change to false.
    reachable: bool,
    /// Whether contact was lost since the last successful read.
    lost_contact: bool,
    /// Until when reads may add providers but not remove them; see the module documentation.
    withhold_removals_until: Option<Instant>,
}

impl Follower {
    async fn run(
        mut self,
        mut pubsub: Option<(PubSubSink, PubSubStream)>,
        stop: CancellationToken,
    ) {
        let resync_interval = self
            .shared
            .config
            .resync_interval
            .max(Duration::from_millis(1));
        let mut resync =
            tokio::time::interval_at(Instant::now() + resync_interval, resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::new(BACKOFF_MAX);
        let mut reconnect_at = Instant::now();
        loop {
            if pubsub.is_none() && Instant::now() >= reconnect_at {
                match self.shared.listen(&self.channel).await {
                    Ok(listening) => {
                        pubsub = Some(listening);
                        backoff.reset();
                        tracing::info!(service = %self.key, "listening to Redis again");
                        // Whatever was published while we were away is lost: read it all.
                        self.resync(&[]).await;
                    }
                    Err(error) => {
                        self.lose_contact(&describe(&error));
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                }
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = self.providers.closed() => return,
                message = next_message(&mut pubsub) => {
                    // Read once for a burst of messages (bounded, should they never stop).
                    let mut deregistered = Vec::new();
                    let mut message = message;
                    let mut open = true;
                    for _ in 0..MAX_BATCHED_MESSAGES {
                        let Some(payload) = message else {
                            open = false;
                            break;
                        };
                        note_deregistered(&payload, &mut deregistered);
                        match next_message(&mut pubsub).now_or_never() {
                            Some(next) => message = next,
                            None => break,
                        }
                    }
                    if !open {
                        pubsub = None;
                        self.lose_contact(&"the pub/sub connection closed");
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                    self.resync(&deregistered).await;
                }
                _ = resync.tick() => {
                    if let Some((sink, _)) = &mut pubsub {
                        // A connection to a vanished host may never report an error by itself.
                        let ping = tokio::time::timeout(
                            self.shared.config.timeout,
                            sink.ping::<redis::Value>(),
                        );
                        let failure = match ping.await {
                            Ok(Ok(_)) => None,
                            Ok(Err(error)) => Some(error.to_string()),
                            Err(_) => Some("the pub/sub connection does not answer".to_owned()),
                        };
                        if let Some(failure) = failure {
                            pubsub = None;
                            self.lose_contact(&failure);
                            reconnect_at = Instant::now() + backoff.next_delay();
                        }
                    }
                    self.resync(&[]).await;
                }
                () = tokio::time::sleep_until(reconnect_at), if pubsub.is_none() => {}
                // The window closes: what the reads lack now goes. Taken first, so that a read
                // failing here does not bring this branch straight back.
                () = sleep_until_some(self.withhold_removals_until) => {
                    self.withhold_removals_until = None;
                    self.resync(&[]).await;
                }
            }
        }
    }

    /// Reads the providers and publishes them; on failure, keeps the last set.
    async fn resync(&mut self, deregistered: &[String]) {
        match self.shared.read_providers(&self.key).await {
            Ok(read) => {
                if !self.reachable {
                    tracing::info!(service = %self.key, "Redis reachable again");
                    self.reachable = true;
                }
                let now = Instant::now();
                if std::mem::take(&mut self.lost_contact) {
                    // Redis may have restarted empty; its owners write their keys back within
                    // a third of the TTL.
                    let ttl = self.shared.config.ttl;
                    tracing::info!(
                        service = %self.key,
                        ?ttl,
                        "withholding provider removals after regaining contact with Redis"
                    );
                    self.withhold_removals_until = Some(now + ttl);
                }
                let next = match self.withhold_removals_until {
                    Some(until) if now < until => {
                        merge_withholding_removals(&self.providers.borrow(), read, deregistered)
                    }
                    _ => {
                        self.withhold_removals_until = None;
                        read
                    }
                };
                self.providers.send_if_modified(|current| {
                    let changed = **current != next;
                    if changed {
                        *current = Arc::new(next);
                    }
                    changed
                });
            }
            Err(error) => self.lose_contact(&describe(&error)),
        }
    }

    /// Notes that Redis could not be reached; warns once per outage.
    fn lose_contact(&mut self, reason: &dyn fmt::Display) {
        self.lost_contact = true;
        if self.reachable {
            self.reachable = false;
            tracing::warn!(
                service = %self.key,
                providers = self.providers.borrow().len(),
                %reason,
                "Redis unreachable; keeping the last known providers"
            );
        }
    }
}

/// `error` and its cause, for the log.
fn describe(error: &Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// The payload of the next message, or `None` once the connection closed; never ready without a
/// connection.
async fn next_message(pubsub: &mut Option<(PubSubSink, PubSubStream)>) -> Option<Vec<u8>> {
    match pubsub {
        Some((_, messages)) => messages
            .next()
            .await
            .map(|message| message.get_payload_bytes().to_vec()),
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Adds the id of a `deregistered {id}` message to `deregistered`.
fn note_deregistered(payload: &[u8], deregistered: &mut Vec<String>) {
    let payload = String::from_utf8_lossy(payload);
    if let Some(id) = payload
        .strip_prefix(DEREGISTERED)
        .and_then(|rest| rest.strip_prefix(' '))
    {
        deregistered.push(id.to_owned());
    }
}

/// `read`, plus the providers of `current` it lacks unless they were deregistered, sorted by
/// address.
fn merge_withholding_removals(
    current: &[Instance],
    mut read: Vec<Instance>,
    deregistered: &[String],
) -> Vec<Instance> {
    let kept: Vec<Instance> = current
        .iter()
        .filter(|old| {
            let id = old.id();
            !deregistered.contains(&id) && !read.iter().any(|new| new.id() == id)
        })
        .cloned()
        .collect();
    read.extend(kept);
    read.sort_by_key(Instance::address);
    read
}

/// Delays between retries: from 100 ms, doubling, up to a bound.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: BACKOFF_MIN.min(max),
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN.min(self.max);
    }
}

/// The connection for commands: one multiplexed connection, dialled on first use and again after
/// any failure that is not a reply from the server. `redis::aio::ConnectionManager` would also
/// reconnect, but it keeps a connection whose replies time out (a hung server, a black-holed
/// path) and sleeps its own backoff inside commands; here every command, dialling included, is
/// bounded by the registry's timeout.
struct Commands {
    /// `host:port`, for messages.
    endpoint: String,
    client: Client,
    timeout: Duration,
    /// The connection and its generation, so that a failure drops only the connection it
    /// happened on.
    connection: Mutex<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
}

impl fmt::Debug for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commands")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A command or a pipeline, sent the same way.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl<'a> From<&'a Cmd> for Request<'a> {
    fn from(command: &'a Cmd) -> Self {
        Self::Command(command)
    }
}

impl<'a> From<&'a Pipeline> for Request<'a> {
    fn from(pipeline: &'a Pipeline) -> Self {
        Self::Pipeline(pipeline)
    }
}

impl Commands {
    /// Sends `request` and reads its reply, dialling first if needed; all within the timeout.
    ///
    /// Every request is idempotent (`SET`, `DEL`, `SCAN`, `MGET`) or harmless to repeat
    /// (`PUBLISH`), so one that failed on a connection found dead (Redis restarted since it was
    /// last used) is sent once more on a fresh one.
    async fn run<'a, T: FromRedisValue>(
        &self,
        what: &str,
        request: impl Into<Request<'a>>,
    ) -> Result<T, Error> {
        let request = request.into();
        let deadline = Instant::now() + self.timeout;
        let mut retried = false;
        loop {
            let mut used = None;
            let attempt = async {
                let (generation, mut connection, fresh) = self.connection().await?;
                used = Some((generation, fresh));
                let reply: RedisResult<T> = match request {
                    Request::Command(command) => command.query_async(&mut connection).await,
                    Request::Pipeline(pipeline) => pipeline.query_async(&mut connection).await,
                };
                reply.map_err(Failure::Redis)
            };
            let failure = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::TimedOut,
            };
            // A reply from the server (a wrong type, say) leaves the connection usable; anything
            // else may have left it broken or out of step.
            let is_reply = matches!(
                &failure,
                Failure::Redis(error)
                    if matches!(error.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension)
            );
            if let (Some((generation, _)), false) = (used, is_reply) {
                let mut slot = self.connection.lock().await;
                if slot
                    .as_ref()
                    .is_some_and(|(current, _)| *current == generation)
                {
                    *slot = None;
                }
            }
            let found_dead = matches!(
                &failure,
                Failure::Redis(error) if error.is_connection_dropped() || error.is_unrecoverable_error()
            );
            if !retried && found_dead && matches!(used, Some((_, false))) {
                retried = true;
                continue;
            }
            return Err(self.error(what, failure));
        }
    }

    fn error(&self, what: &str, failure: Failure) -> Error {
        let endpoint = &self.endpoint;
        match failure {
            Failure::Connect(error) => {
                registry_error(format!("cannot connect to Redis at {endpoint}")).with_source(error)
            }
            Failure::Redis(error) => {
                registry_error(format!("Redis at {endpoint}: {what} failed")).with_source(error)
            }
            Failure::TimedOut => registry_error(format!(
                "Redis at {endpoint}: {what} took more than {:?}",
                self.timeout
            )),
        }
    }

    /// The current connection, dialled if there is none; `true` if it was just dialled.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection, bool), Failure> {
        let mut slot = self.connection.lock().await;
        if let Some((generation, connection)) = &*slot {
            return Ok((*generation, connection.clone(), false));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(Failure::Connect)?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        *slot = Some((generation, connection.clone()));
        Ok((generation, connection, true))
    }
}

/// Why a command failed.
enum Failure {
    Connect(RedisError),
    Redis(RedisError),
    TimedOut,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("demo.Calculator").with_version("1.0.0")
    }

    fn provider(port: u16) -> Instance {
        Instance::new(&key(), "127.0.0.1", port)
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut backoff = Backoff::new(BACKOFF_MAX);
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_MIN);

        let mut short = Backoff::new(Duration::from_millis(50));
        assert_eq!(short.next_delay(), Duration::from_millis(50));
        assert_eq!(short.next_delay(), Duration::from_millis(50));
    }

    #[test]
    fn withholding_keeps_missing_providers_but_not_deregistered_ones() {
        let current = vec![provider(1), provider(2), provider(3)];
        let read = vec![provider(4), provider(2)];
        let merged = merge_withholding_removals(&current, read, &[provider(3).id()]);
        let ports: Vec<u16> = merged.iter().map(|i| i.port).collect();
        assert_eq!(ports, [1, 2, 4]);
    }

    #[test]
    fn a_newer_read_of_a_provider_replaces_the_old_one() {
        let mut heavier = provider(1);
        heavier.weight = 500;
        let merged = merge_withholding_removals(&[provider(1)], vec![heavier.clone()], &[]);
        assert_eq!(merged, vec![heavier]);
    }

    #[test]
    fn deregistration_messages_name_the_instance() {
        let mut deregistered = Vec::new();
        note_deregistered(b"registered 127.0.0.1:1", &mut deregistered);
        note_deregistered(b"deregistered 127.0.0.1:2", &mut deregistered);
        note_deregistered(b"restored 127.0.0.1:3", &mut deregistered);
        note_deregistered(b"deregistered", &mut deregistered);
        assert_eq!(deregistered, ["127.0.0.1:2"]);
    }
}
