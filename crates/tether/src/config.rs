//! Settings for clients and servers: plain structs with documented defaults.

use std::time::Duration;

use crate::{Serialization, protocol::DEFAULT_MAX_FRAME_LENGTH};

/// How a client connects and calls.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = tether::ClientConfig::default();
/// config.timeout = Duration::from_millis(500);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// How long a call waits for its reply unless its options say otherwise. The remaining time
    /// travels with the request, so the server drops work nobody waits for. Default: 3 s.
    pub timeout: Duration,
    /// How long opening a TCP connection may take. Default: 3 s.
    pub connect_timeout: Duration,
    /// The body format of calls. Default: [`Serialization::default()`], the fastest binary format
    /// this build enables.
    pub serialization: Serialization,
    /// The bound on a frame's metadata and body together, both ways, in bytes. Default: 16 MiB.
    pub max_frame_length: usize,
    /// Bytes queued for the socket past which new calls wait for the writer to catch up.
    /// Default: 4 MiB.
    pub write_buffer_limit: usize,
    /// Whether to set `TCP_NODELAY`; the writer already batches frames, so Nagle's algorithm only
    /// adds latency. Default: true.
    pub tcp_nodelay: bool,
    /// How long the connection may go without receiving a frame before the client sends a Ping.
    /// Any frame counts, so a busy connection sends none. Default: 5 s.
    pub heartbeat_interval: Duration,
    /// How long the connection may go without receiving a frame before the client declares it
    /// dead, fails its calls in flight at once and reconnects. `None`: three heartbeat
    /// intervals. Detection happens within this plus one interval. Default: `None`.
    pub idle_timeout: Option<Duration>,
    /// The delays between reconnect attempts. After a connection is lost the first attempt is
    /// immediate; each failed attempt waits the next delay.
    pub reconnect: Backoff,
    /// Whether a call made while no connection is ready waits for one (within its deadline)
    /// instead of failing at once as unavailable. [`CallOptions`](crate::CallOptions) can
    /// override it per client handle. Default: false.
    pub wait_for_ready: bool,
    /// The load balancer of a client with several providers, by name (see
    /// [`balance::NAMES`](crate::balance::NAMES)); `ClientBuilder::balancer` sets one by type.
    /// Default: `random`.
    pub balance: String,
    /// What a client with several providers does when a call fails. Default:
    /// [`Cluster::Failover`] with 2 retries.
    pub cluster: Cluster,
    /// How long after a provider starts its weight grows linearly to the full weight, so a
    /// fresh process is not flooded while it warms up. Default: 10 minutes.
    pub warmup: Duration,
    /// Whether a client with several providers connects to each at once, instead of on the
    /// first call. Default: false.
    pub eager: bool,
}

impl ClientConfig {
    /// The idle timeout in force: the one set, or three heartbeat intervals.
    pub fn effective_idle_timeout(&self) -> Duration {
        self.idle_timeout.unwrap_or(self.heartbeat_interval * 3)
    }
}

/// What a client with several providers does when a call fails.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Cluster {
    /// Tries another provider, up to `retries` more times within the call's deadline; only for
    /// `#[idempotent]` methods, or when the request certainly never ran (no connection, or the
    /// provider answered Overloaded or ShuttingDown).
    Failover {
        /// Attempts after the first.
        retries: u32,
    },
    /// One attempt; its failure is the call's.
    Failfast,
    /// Logs a failure and answers `fallback` instead, decoded as the method's return type
    /// (`null` suits `()` and `Option<T>`); a fallback that does not decode as that type makes
    /// the call fail with a serialization error (the original failure is in the log).
    Failsafe {
        /// The answer in place of a failure, as JSON.
        fallback: serde_json::Value,
    },
    /// Sends the call to `parallel` providers at once; the first success answers.
    Forking {
        /// How many providers at most.
        parallel: usize,
    },
    /// Sends the call to every ready provider; fails if any fails, else answers the last reply.
    Broadcast,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::Failover { retries: 2 }
    }
}

impl Cluster {
    /// The strategy with that name and its default setting: `failover`, `failfast`,
    /// `failsafe`, `forking`, `broadcast`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "failover" => Self::default(),
            "failfast" => Self::Failfast,
            "failsafe" => Self::Failsafe {
                fallback: serde_json::Value::Null,
            },
            "forking" => Self::Forking { parallel: 2 },
            "broadcast" => Self::Broadcast,
            _ => return None,
        })
    }
}

/// An exponential backoff schedule with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay. Default: 100 ms.
    pub initial: Duration,
    /// What each failure multiplies the delay by (values below 1 count as 1). Default: 2.
    pub multiplier: f64,
    /// The longest delay. Default: 10 s.
    pub max: Duration,
    /// The share of each delay taken off at random, from 0 (none) to 1 (anything down to zero),
    /// so clients that lost the same server spread their attempts. Default: 0.2.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            serialization: Serialization::default(),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            write_buffer_limit: 4 * 1024 * 1024,
            tcp_nodelay: true,
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: None,
            reconnect: Backoff::default(),
            wait_for_ready: false,
            balance: "random".to_owned(),
            cluster: Cluster::default(),
            warmup: crate::balance::DEFAULT_WARMUP,
            eager: false,
        }
    }
}

/// How a server accepts and runs calls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Calls one connection may have running at once; past it a request is answered
    /// `Overloaded` without running. Default: 1024.
    pub max_in_flight_per_connection: usize,
    /// Calls the whole server may have running at once; past it a request is answered
    /// `Overloaded` without running. Default: 65 536.
    pub max_in_flight: usize,
    /// The bound on a frame's metadata and body together, both ways, in bytes; a peer that
    /// announces more gets a GoAway and is disconnected. Default: 16 MiB.
    pub max_frame_length: usize,
    /// Reply bytes queued for one connection's socket past which the server stops reading that
    /// connection's requests until the peer reads; a peer that never reads cannot make the
    /// server buffer without bound. Default: 4 MiB.
    pub write_buffer_limit: usize,
    /// How long a graceful shutdown waits for calls in flight before it closes connections
    /// anyway. Default: 10 s.
    pub shutdown_grace_period: Duration,
    /// Whether to set `TCP_NODELAY` on accepted connections. Default: true.
    pub tcp_nodelay: bool,
    /// Connections the server keeps open at once; one more is handled as `eviction` says.
    /// Default: `None`, no bound.
    pub max_connections: Option<usize>,
    /// Which connection gives way when one arrives past `max_connections`. Default:
    /// [`Eviction::Refuse`].
    pub eviction: Eviction,
    /// The server's heartbeat tick. The server is the passive side: it sends a Ping only after
    /// two intervals without receiving a frame, so a client that heartbeats at this interval or
    /// faster is never pinged.
    /// Default: 5 s.
    pub heartbeat_interval: Duration,
    /// How long a connection may go without receiving a frame before the server closes it and
    /// frees what it holds. `None`: three heartbeat intervals. Default: `None`.
    pub idle_timeout: Option<Duration>,
    /// The `host:port` consumers should connect to, as registered in the registry, when it is
    /// not the bound address (NAT, containers, binding `0.0.0.0`). Default: `None`, the bound
    /// address.
    pub advertised_addr: Option<String>,
    /// The share of calls this provider asks for, relative to the other providers of the same
    /// service, as registered. Default: 100.
    pub weight: u32,
}

impl ServerConfig {
    /// The idle timeout in force: the one set, or three heartbeat intervals.
    pub fn effective_idle_timeout(&self) -> Duration {
        self.idle_timeout.unwrap_or(self.heartbeat_interval * 3)
    }
}

/// Which connection gives way when one more arrives than `max_connections` allows. The one that
/// goes gets a GoAway with status `Overloaded` and the reason; an evicted connection finishes
/// its calls in flight within the shutdown grace period before it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Eviction {
    /// The new connection is turned away.
    #[default]
    Refuse,
    /// The connection open longest goes (first in, first out).
    Oldest,
    /// The most recently accepted connection goes.
    Newest,
    /// The connection whose last request is oldest goes (one that never sent any counts from
    /// when it was accepted).
    LeastRecentlyUsed,
    /// The connection that has sent the fewest requests goes.
    LeastUsed,
    /// A connection chosen at random goes.
    Random,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_in_flight_per_connection: 1024,
            max_in_flight: 65_536,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            write_buffer_limit: 4 * 1024 * 1024,
            shutdown_grace_period: Duration::from_secs(10),
            tcp_nodelay: true,
            max_connections: None,
            eviction: Eviction::Refuse,
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: None,
            advertised_addr: None,
            weight: 100,
        }
    }
}
