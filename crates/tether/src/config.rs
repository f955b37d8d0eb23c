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
        }
    }
}
