//! The server side of the transport: the accept loop and, per connection, a reader that routes
//! requests and a writer that batches replies.
//!
//! The reader answers on the spot whatever needs no handler (Ping, a request past the in-flight
//! bound, a format this build lacks, malformed metadata) and hands every other request to the
//! [`RequestHandler`], which runs it on a task of its own. A frame that breaks the protocol gets
//! a GoAway with the reason, then the connection closes; other connections never notice.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use bytes::{BufMut, Bytes};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::{Instant, timeout},
};
use tokio_util::{codec::FramedRead, sync::CancellationToken, task::TaskTracker};

use super::{
    admission::{Admission, Admitted},
    liveness::{Liveness, Tick, heartbeat_ticks},
    write_queue::WriteQueue,
};
use crate::{
    Serialization,
    config::ServerConfig,
    protocol::{
        Flags, Frame, FrameBuilder, FrameCodec, FrameKind, FrameTooLarge, Header, Metadata, Status,
    },
};

/// Runs requests that passed the transport's checks.
pub(crate) trait RequestHandler: Send + Sync + 'static {
    /// Starts `request`, or answers it at once; must not block.
    fn handle(&self, request: IncomingRequest);
}

/// A request that passed the transport's checks, with what it takes to answer it.
pub(crate) struct IncomingRequest {
    pub(crate) metadata: Metadata,
    pub(crate) serialization: Serialization,
    pub(crate) body: Bytes,
    /// When the caller stops waiting, from the timeout it sent.
    pub(crate) deadline: Option<Instant>,
    pub(crate) responder: Responder,
}

/// State shared by the accept loop and every connection.
pub(crate) struct ServerShared {
    pub(crate) config: ServerConfig,
    pub(crate) handler: Arc<dyn RequestHandler>,
    pub(crate) shutdown: CancellationToken,
    in_flight: AtomicUsize,
    admission: Admission,
    /// Every open connection's heartbeat accounting, walked by one sweeper task.
    heartbeats: Mutex<HashMap<u64, Watched>>,
}

/// One connection as the heartbeat sweeper sees it.
struct Watched {
    connection: Weak<Connection>,
    liveness: Liveness,
    next_ping_id: u64,
}

impl ServerShared {
    pub(crate) fn new(config: ServerConfig, handler: Arc<dyn RequestHandler>) -> Self {
        Self {
            handler,
            shutdown: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            admission: Admission::new(
                config.max_connections,
                config.eviction,
                fastrand::Rng::new(),
            ),
            heartbeats: Mutex::new(HashMap::new()),
            config,
        }
    }

    fn lock_heartbeats(&self) -> MutexGuard<'_, HashMap<u64, Watched>> {
        self.heartbeats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the heartbeat accounting of connection `id`. Its first sweep counts as a frame,
    /// so a new connection is given at least the idle timeout before it is declared dead.
    fn watch(&self, id: u64, connection: &Arc<Connection>) {
        let config = &self.config;
        let mut liveness =
            Liveness::passive(config.heartbeat_interval, config.effective_idle_timeout());
        liveness.on_frame();
        let watched = Watched {
            connection: Arc::downgrade(connection),
            liveness,
            next_ping_id: 0,
        };
        self.lock_heartbeats().insert(id, watched);
    }

    fn unwatch(&self, id: u64) {
        self.lock_heartbeats().remove(&id);
    }

    /// Heartbeat ticks for every connection of the server, from one task: each interval it takes
    /// every connection's "frame seen" flag, pings the ones silent for two intervals and tells
    /// the ones silent for the idle timeout to close. A timer per connection would wake each
    /// connection's reader every interval: ten thousand wake-ups a second for ten thousand idle
    /// connections at a 1 s interval, where this is one walk of a table.
    pub(crate) async fn sweep_heartbeats(self: Arc<Self>) {
        let mut ticks = heartbeat_ticks(self.config.heartbeat_interval);
        let mut shutdown = pin!(self.shutdown.cancelled());
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            self.lock_heartbeats().retain(|_, watched| {
                let Some(connection) = watched.connection.upgrade() else {
                    return false;
                };
                if connection.heard.swap(false, Ordering::Relaxed) {
                    watched.liveness.on_frame();
                }
                match watched.liveness.on_tick() {
                    Tick::Alive | Tick::Quiet { .. } => true,
                    Tick::Ping { silent } => {
                        watched.next_ping_id += 1;
                        tracing::trace!(peer = %connection.peer, ?silent, "sending Ping");
                        let ping = Header::new(FrameKind::Ping, watched.next_ping_id);
                        let _ = connection.writes.push_header(&ping);
                        true
                    }
                    Tick::Dead { silent } => {
                        tracing::info!(
                            peer = %connection.peer,
                            ?silent,
                            "closing a connection that fell silent"
                        );
                        // Told once; its reader closes it and needs no more sweeps.
                        connection.dead.cancel();
                        false
                    }
                }
            });
        }
    }

    /// Calls running on the whole server.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Connections open.
    pub(crate) fn connections(&self) -> usize {
        self.admission.open()
    }
}

/// Accepts connections until shutdown, serving each on a task tracked by `tasks`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    server: Arc<ServerShared>,
    tasks: TaskTracker,
) {
    let mut shutdown = pin!(server.shutdown.cancelled());
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match server.admission.admit() {
                Some(admitted) => {
                    tasks.spawn(serve_connection(stream, peer, server.clone(), admitted));
                }
                None => {
                    tracing::info!(%peer, "refusing a connection: too many open");
                    tasks.spawn(refuse(stream, server.config.max_frame_length));
                }
            },
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: keep serving the
                // connections there are, and try again shortly rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long replies and a GoAway may take to leave once the peer closed or broke the protocol.
const FLUSH_AFTER_CLOSE: std::time::Duration = std::time::Duration::from_secs(1);

/// One accepted connection's state, shared by its reader, its writer and its running calls.
struct Connection {
    peer: SocketAddr,
    writes: WriteQueue,
    /// Set by the reader on every frame, taken by the heartbeat sweeper each interval.
    heard: AtomicBool,
    /// Cancelled by the heartbeat sweeper when nothing came for the idle timeout.
    dead: CancellationToken,
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    idle: Notify,
    max_frame_length: usize,
}

/// How a connection's read loop ended.
enum End {
    PeerClosed,
    PeerGoingAway,
    Broken(String),
    Shutdown,
    Evicted,
    /// No frame for the idle timeout.
    Idle,
}

/// Tells a connection past the bound why it is turned away, then closes it.
async fn refuse(mut stream: TcpStream, max_frame_length: usize) {
    let mut header = Header::new(FrameKind::GoAway, 0);
    header.status = Status::Overloaded;
    let mut buf = bytes::BytesMut::new();
    let mut frame = FrameBuilder::begin(&mut buf, &header);
    frame.begin_body(&buf);
    buf.put_slice(b"too many connections");
    if frame.finish(&mut buf, max_frame_length).is_ok() {
        // A peer that does not read cannot hold this task: the write is small and bounded.
        let write = tokio::io::AsyncWriteExt::write_all(&mut stream, &buf);
        let _ = timeout(std::time::Duration::from_secs(1), write).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<ServerShared>,
    admitted: Admitted,
) {
    let config = &server.config;
    if let Err(error) = stream.set_nodelay(config.tcp_nodelay) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    tracing::debug!(%peer, "connection accepted");
    let (read, mut write) = stream.into_split();
    let connection = Arc::new(Connection {
        peer,
        writes: WriteQueue::new(config.write_buffer_limit),
        heard: AtomicBool::new(false),
        dead: CancellationToken::new(),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        max_frame_length: config.max_frame_length,
    });
    server.watch(admitted.id, &connection);
    let mut writer = tokio::spawn({
        let connection = connection.clone();
        async move { connection.writes.write_to(&mut write).await }
    });

    let codec = FrameCodec::builder()
        .max_frame_length(config.max_frame_length)
        .build();
    let mut frames = FramedRead::new(read, codec);
    let mut last_request_id = 0;
    let mut shutdown = pin!(server.shutdown.cancelled());
    let mut evicted = pin!(admitted.evict.cancelled());
    let mut dead = pin!(connection.dead.cancelled());
    let end = loop {
        // Replies queue without waiting (a handler must never block on a slow peer); the reader
        // waits instead, so a peer that does not read its replies stops being read, and TCP
        // flow control pushes back on it.
        let frame = tokio::select! {
            biased;
            () = &mut shutdown => break End::Shutdown,
            () = &mut evicted => break End::Evicted,
            () = &mut dead => break End::Idle,
            frame = async {
                connection.writes.room().await;
                frames.next().await
            } => frame,
        };
        connection.heard.store(true, Ordering::Relaxed);
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => break End::Broken(error.to_string()),
            None => break End::PeerClosed,
        };
        match frame.header.kind {
            FrameKind::Request => {
                last_request_id = last_request_id.max(frame.header.request_id);
                // One clock reading per request serves the eviction order and the deadline.
                let now = Instant::now();
                admitted.activity.record_request(now);
                connection.on_request(frame, &server, now);
            }
            FrameKind::Ping => {
                let pong = Header::new(FrameKind::Pong, frame.header.request_id);
                let _ = connection.writes.push_header(&pong);
            }
            FrameKind::Pong => {}
            FrameKind::GoAway => break End::PeerGoingAway,
            FrameKind::Response => break End::Broken("client sent a response frame".to_owned()),
        }
    };

    // Whatever ends the connection, what is still queued for the peer gets a bounded time to
    // leave: a peer that does not read must not hold the connection (or a shutdown) forever.
    let grace = config.shutdown_grace_period;
    let flush_by = match end {
        End::PeerClosed => {
            tracing::debug!(%peer, "client closed the connection");
            Instant::now() + FLUSH_AFTER_CLOSE
        }
        End::Idle => {
            // Nothing has come from the peer for the idle timeout (the sweeper logged it):
            // nothing will be read.
            Instant::now()
        }
        End::Broken(reason) => {
            tracing::info!(%peer, %reason, "closing connection after a protocol error");
            connection.go_away(last_request_id, Status::ProtocolError, &reason);
            Instant::now() + FLUSH_AFTER_CLOSE
        }
        End::PeerGoingAway | End::Shutdown | End::Evicted => {
            match end {
                End::Shutdown => {
                    connection.go_away(last_request_id, Status::Ok, "server shutting down");
                }
                End::Evicted => connection.go_away(
                    last_request_id,
                    Status::Overloaded,
                    "evicted to make room for a new connection",
                ),
                _ => {}
            }
            // The grace period covers both the calls in flight and the flush of their replies.
            let deadline = Instant::now() + grace;
            if tokio::time::timeout_at(deadline, connection.until_idle())
                .await
                .is_err()
            {
                tracing::warn!(%peer, ?grace, "calls still running after the grace period");
            }
            deadline
        }
    };
    connection.writes.close();
    match tokio::time::timeout_at(flush_by, &mut writer).await {
        Ok(Ok(Err(error))) => tracing::debug!(%peer, %error, "write failed"),
        Ok(Err(error)) => tracing::error!(%peer, %error, "writer task failed"),
        Ok(Ok(Ok(()))) => {}
        Err(_) => {
            tracing::debug!(%peer, "the peer does not read; closing without flushing");
            writer.abort();
        }
    }
    server.unwatch(admitted.id);
    server.admission.leave(admitted.id);
    tracing::debug!(%peer, "connection closed");
}

impl Connection {
    fn on_request(self: &Arc<Self>, frame: Frame, server: &Arc<ServerShared>, now: Instant) {
        let header = frame.header;
        let mut responder = Responder {
            connection: self.clone(),
            request_id: header.request_id,
            serialization: header.serialization,
            oneway: header.flags.contains(Flags::ONEWAY),
            in_flight: None,
        };
        let Some(in_flight) = InFlight::acquire(self, server) else {
            responder.fail(Status::Overloaded, "too many calls in flight");
            return;
        };
        responder.in_flight = Some(in_flight);
        if !header.serialization.is_enabled() {
            let message = format!(
                "serialization {} is not enabled on this server",
                header.serialization
            );
            responder.fail(Status::BadRequest, &message);
            return;
        }
        let metadata = match frame.decode_metadata() {
            Ok(metadata) => metadata,
            Err(error) => {
                responder.fail(Status::BadRequest, &format!("malformed metadata: {error}"));
                return;
            }
        };
        // The caller stops waiting after `timeout`: with none left, the call is not started.
        // A timeout too long to represent as an instant is no deadline at all.
        if metadata.timeout.is_some_and(|timeout| timeout.is_zero()) {
            responder.fail(
                Status::DeadlineExceeded,
                "deadline passed before the call started",
            );
            return;
        }
        let deadline = metadata
            .timeout
            .and_then(|timeout| now.checked_add(timeout));
        server.handler.handle(IncomingRequest {
            metadata,
            serialization: header.serialization,
            body: frame.body,
            deadline,
            responder,
        });
    }

    fn go_away(&self, last_request_id: u64, status: Status, reason: &str) {
        let mut header = Header::new(FrameKind::GoAway, last_request_id);
        header.status = status;
        let _ = self.writes.push(|buf| {
            let mut frame = FrameBuilder::begin(buf, &header);
            frame.begin_body(buf);
            buf.put_slice(reason.as_bytes());
            frame.finish(buf, self.max_frame_length)
        });
    }

    async fn until_idle(&self) {
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One call counted against the connection's and the server's bounds until it is dropped.
struct InFlight {
    connection: Arc<Connection>,
    server: Arc<ServerShared>,
}

impl InFlight {
    fn acquire(connection: &Arc<Connection>, server: &Arc<ServerShared>) -> Option<Self> {
        let config = &server.config;
        if connection.in_flight.fetch_add(1, Ordering::AcqRel)
            >= config.max_in_flight_per_connection
        {
            connection.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if server.in_flight.fetch_add(1, Ordering::AcqRel) >= config.max_in_flight {
            server.in_flight.fetch_sub(1, Ordering::AcqRel);
            connection.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self {
            connection: connection.clone(),
            server: server.clone(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.server.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.connection.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connection.idle.notify_waiters();
        }
    }
}

/// Answers one request: at most once, in the format it came in, straight into the connection's
/// write buffer. Holds the request's place against the in-flight bounds until dropped.
pub(crate) struct Responder {
    connection: Arc<Connection>,
    request_id: u64,
    serialization: Serialization,
    oneway: bool,
    in_flight: Option<InFlight>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("peer", &self.connection.peer)
            .field("request_id", &self.request_id)
            .field("oneway", &self.oneway)
            .finish_non_exhaustive()
    }
}

/// The reply could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyError {
    #[error("reply does not encode: {0}")]
    Serialization(#[from] crate::SerializationError),
    #[error("reply too large: {0}")]
    TooLarge(#[from] FrameTooLarge),
}

impl Responder {
    /// Sends `value` as the reply; a oneway request sends nothing. A closed connection is not an
    /// error: the caller is gone and there is no one to tell.
    pub(crate) fn reply<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReplyError> {
        if self.oneway {
            return Ok(());
        }
        let mut header = Header::new(FrameKind::Response, self.request_id);
        header.serialization = self.serialization;
        let max = self.connection.max_frame_length;
        let serialization = self.serialization;
        self.connection
            .writes
            .push(|buf| {
                let mut frame = FrameBuilder::begin(buf, &header);
                frame.begin_body(buf);
                if let Err(error) = serialization.serialize(value, buf) {
                    frame.abort(buf);
                    return Err(ReplyError::from(error));
                }
                Ok(frame.finish(buf, max)?)
            })
            .unwrap_or(Ok(()))
    }

    /// Answers with a non-Ok status and a message; for a oneway request, only logs it.
    pub(crate) fn fail(&mut self, status: Status, message: &str) {
        if self.oneway {
            tracing::debug!(peer = %self.connection.peer, %status, message, "oneway call failed");
            return;
        }
        let mut header = Header::new(FrameKind::Response, self.request_id);
        header.serialization = self.serialization;
        header.status = status;
        let max = self.connection.max_frame_length;
        // A message too long for a frame (only a misconfigured tiny maximum) is cut to fit.
        let message = &message.as_bytes()[..message.len().min(max)];
        let _ = self.connection.writes.push(|buf| {
            let mut frame = FrameBuilder::begin(buf, &header);
            frame.begin_body(buf);
            buf.put_slice(message);
            frame.finish(buf, max)
        });
    }
}
