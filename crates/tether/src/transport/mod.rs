//! Connections: the multiplexed client connection, the server's accept loop and per-connection
//! tasks, and the batching writer both sides share.

mod admission;
mod channel;
mod connection;
mod liveness;
mod server;
mod write_queue;

pub(crate) use channel::Channel;
pub use channel::ConnectionState;
pub(crate) use connection::{Connection, Request, Slot, encode_service_key};
pub(crate) use server::{IncomingRequest, RequestHandler, Responder, ServerShared, accept_loop};

use std::time::Duration;

use tokio::time::Instant;

/// The instant `timeout` from now; a timeout too long to represent means "practically never".
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);
    let now = Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}
