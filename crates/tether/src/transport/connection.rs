//! The client side of one TCP connection: many calls in flight at once, matched to their
//! replies by request id.
//!
//! A call registers a one-shot slot under a fresh id, encodes its request straight into the
//! connection's [`WriteQueue`] and waits on the slot. One reader task decodes replies and fills
//! the slots; one writer task drains the queue. A call that times out or is dropped removes its
//! slot on the way out, so nothing is left behind; when the connection breaks, every slot is
//! failed at once with the reason.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::{
    net::{TcpStream, tcp::OwnedReadHalf},
    sync::oneshot,
    time::{Instant, timeout, timeout_at},
};
use tokio_util::{codec::FramedRead, sync::CancellationToken};

use super::{
    liveness::{Liveness, Tick, heartbeat_ticks},
    write_queue::WriteQueue,
};
use crate::{
    Serialization,
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::{
        self, Flags, Frame, FrameBuilder, FrameCodec, FrameKind, Header, MetadataTag, Status,
    },
};

/// How long queued frames may take to leave once the connection is closing.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);

/// One request, borrowed from the caller for as long as it takes to encode.
pub(crate) struct Request<'a, A: ?Sized> {
    /// Pre-encoded metadata entries naming the service (see [`encode_service_key`]).
    pub(crate) service: &'a Bytes,
    pub(crate) method: &'a str,
    pub(crate) serialization: Serialization,
    pub(crate) oneway: bool,
    /// The method may run twice without harm, so a failed call may be retried elsewhere.
    pub(crate) idempotent: bool,
    pub(crate) timeout: Duration,
    pub(crate) args: &'a A,
}

/// The metadata entries for a service key, encoded once per client rather than per call.
pub(crate) fn encode_service_key(name: &str, version: &str, group: &str) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    let invalid = |e: protocol::MetadataError| Error::new(ErrorKind::InvalidRequest, e.to_string());
    protocol::put_str(&mut buf, MetadataTag::Service, name).map_err(invalid)?;
    for (tag, value) in [(MetadataTag::Version, version), (MetadataTag::Group, group)] {
        if !value.is_empty() {
            protocol::put_str(&mut buf, tag, value).map_err(invalid)?;
        }
    }
    Ok(buf.freeze())
}

/// A handle to one multiplexed connection. Clones share it; when the last clone is dropped the
/// connection flushes what is queued and closes.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    _owner: Arc<CloseOnDrop>,
}

struct Shared {
    peer: SocketAddr,
    /// Set when the server turned this connection away or evicted it (GoAway `Overloaded`).
    refused: std::sync::atomic::AtomicBool,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
    writes: WriteQueue,
    max_frame_length: usize,
    /// Cancelled when the connection stops taking calls: on GoAway or close.
    stopped: CancellationToken,
}

type Reply = Result<Frame, Error>;

struct Pending {
    calls: HashMap<u64, oneshot::Sender<Reply>, BuildHasherDefault<RequestIdHasher>>,
    state: State,
}

/// Whether the connection takes new calls.
enum State {
    Open,
    /// The server sent GoAway: calls it accepted still get replies, nothing new is sent.
    Draining(String),
    /// Gone; the reason.
    Closed(String),
}

/// Closes the connection when the last user handle goes, even though its tasks still hold
/// [`Shared`].
struct CloseOnDrop(CancellationToken);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Connection {
    /// Opens a connection and starts its reader and writer tasks.
    pub(crate) async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Self, Error> {
        let stream = timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("connecting to {addr} timed out"),
                )
            })?
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("cannot connect to {addr}"))
                    .with_source(e)
            })?;
        stream
            .set_nodelay(config.tcp_nodelay)
            .map_err(|e| Error::new(ErrorKind::Io, "cannot set TCP_NODELAY").with_source(e))?;
        let (read, mut write) = stream.into_split();
        let shared = Arc::new(Shared {
            peer: addr,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending {
                calls: HashMap::default(),
                state: State::Open,
            }),
            writes: WriteQueue::new(config.write_buffer_limit),
            max_frame_length: config.max_frame_length,
            stopped: CancellationToken::new(),
            refused: std::sync::atomic::AtomicBool::new(false),
        });
        let shutdown = CancellationToken::new();
        let codec = FrameCodec::builder()
            .max_frame_length(config.max_frame_length)
            .build();
        let liveness = Liveness::new(config.heartbeat_interval, config.effective_idle_timeout());
        let mut writer = tokio::spawn({
            let shared = shared.clone();
            async move {
                if let Err(error) = shared.writes.write_to(&mut write).await {
                    shared.close(format!("write failed: {error}"));
                }
            }
        });
        tokio::spawn({
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            async move {
                let frames = FramedRead::new(read, codec);
                let reason = shared.read_replies(frames, liveness, &shutdown).await;
                shared.close(reason);
                // What is queued (a oneway call just before the client was dropped) gets a
                // moment to leave; a server that does not read must not keep the socket open.
                if timeout(FLUSH_ON_CLOSE, &mut writer).await.is_err() {
                    writer.abort();
                }
            }
        });
        Ok(Self {
            shared,
            _owner: Arc::new(CloseOnDrop(shutdown)),
        })
    }

    /// Calls waiting for their reply on this connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.lock_pending().calls.len()
    }

    /// Whether the connection takes no new calls (closed, or draining after a GoAway).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.stopped.is_cancelled()
    }

    /// Resolves when the connection stops taking calls: on GoAway, or when it closes.
    pub(crate) async fn stopped(&self) {
        self.shared.stopped.cancelled().await;
    }

    /// Whether the server said it has too many connections (GoAway `Overloaded`): coming back at
    /// once would only repeat that.
    pub(crate) fn was_refused(&self) -> bool {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Why the connection stopped taking calls, once it has.
    pub(crate) fn stop_reason(&self) -> Option<String> {
        match &self.shared.lock_pending().state {
            State::Open => None,
            State::Draining(reason) | State::Closed(reason) => Some(reason.clone()),
        }
    }

    /// Sends a request and waits for its reply frame; a oneway request returns `None` once it
    /// is queued for the socket.
    pub(crate) async fn call<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
    ) -> Result<Option<Frame>, Error> {
        match self.send(request, deadline).await? {
            Some(slot) => slot.reply(deadline, request.timeout).await,
            None => Ok(None),
        }
    }

    /// Queues a request for the socket, waiting (until `deadline`) only for room in the write
    /// queue, and returns the slot its reply will fill (`None` for a oneway request). Once this
    /// returns, the request leaves on the wire even if the slot is dropped unanswered: what
    /// forking relies on to send every fork before the first answer ends the call.
    pub(crate) async fn send<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
    ) -> Result<Option<Slot<'_>>, Error> {
        let shared = &*self.shared;
        timeout_at(deadline, shared.writes.room())
            .await
            .map_err(|_| Error::timeout(request.timeout))?;

        let remaining = deadline.saturating_duration_since(Instant::now());
        // The id is taken and the slot registered under the write queue's lock, so ids go out
        // in increasing order (a GoAway's "highest id read" relies on it), and the slot exists
        // before the writer can send the request.
        shared
            .writes
            .push(|buf| {
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let slot = shared.register(id, !request.oneway)?;
                encode_request(buf, id, request, remaining, shared.max_frame_length)?;
                Ok::<_, Error>(slot)
            })
            .map_err(|_| shared.unavailable())?
    }
}

impl Shared {
    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks that the connection takes calls and, if `answered`, registers a reply slot for
    /// `id`.
    fn register(&self, id: u64, answered: bool) -> Result<Option<Slot<'_>>, Error> {
        let mut pending = self.lock_pending();
        if !matches!(pending.state, State::Open) {
            drop(pending);
            return Err(self.unavailable());
        }
        if !answered {
            return Ok(None);
        }
        let (sender, reply) = oneshot::channel();
        pending.calls.insert(id, sender);
        Ok(Some(Slot {
            shared: self,
            id,
            reply,
            answered: false,
        }))
    }

    /// The error for a call that could not be sent: it never reached the server.
    fn unavailable(&self) -> Error {
        let reason = match &self.lock_pending().state {
            State::Open => "closed".to_owned(),
            State::Draining(reason) | State::Closed(reason) => reason.clone(),
        };
        Error::new(
            ErrorKind::Unavailable,
            format!("connection to {}: {reason}", self.peer),
        )
    }

    /// The error for a call in flight when the connection broke.
    fn lost(&self) -> Error {
        let reason = match &self.lock_pending().state {
            State::Closed(reason) => reason.clone(),
            _ => "closed".to_owned(),
        };
        Error::new(
            ErrorKind::ConnectionLost,
            format!("connection to {}: {reason}", self.peer),
        )
    }

    /// After a GoAway: takes no new calls, and fails at once the calls the server will not
    /// answer (ids above `last_id`), which never ran and are safe to send elsewhere.
    fn drain(&self, last_id: u64, reason: String) {
        let mut pending = self.lock_pending();
        if !matches!(pending.state, State::Open) {
            return;
        }
        tracing::debug!(peer = %self.peer, %reason, last_id, "server going away");
        let refused: Vec<_> = pending.calls.extract_if(|&id, _| id > last_id).collect();
        let message = format!(
            "connection to {}: {reason}; the call was not run",
            self.peer
        );
        pending.state = State::Draining(reason);
        drop(pending);
        self.stopped.cancel();
        for (_, sender) in refused {
            let _ = sender.send(Err(Error::new(ErrorKind::Unavailable, message.clone())));
        }
    }

    /// Fails every call in flight with `reason` and stops the writer after what is queued. A
    /// connection that was draining keeps its GoAway as the reason: that is why it ended.
    fn close(&self, reason: String) {
        let mut pending = self.lock_pending();
        let reason = match &pending.state {
            State::Closed(_) => return,
            State::Draining(cause) => format!("{cause}; then {reason}"),
            State::Open => reason,
        };
        tracing::debug!(peer = %self.peer, %reason, "connection closed");
        let calls = std::mem::take(&mut pending.calls);
        let message = format!("connection to {}: {reason}", self.peer);
        pending.state = State::Closed(reason);
        drop(pending);
        self.stopped.cancel();
        for (_, sender) in calls {
            let _ = sender.send(Err(Error::new(ErrorKind::ConnectionLost, message.clone())));
        }
        self.writes.close();
    }

    /// Reads frames until the peer closes, the stream breaks, the server falls silent for the
    /// idle timeout or the owner goes away; returns why.
    async fn read_replies(
        &self,
        mut frames: FramedRead<OwnedReadHalf, FrameCodec>,
        mut liveness: Liveness,
        shutdown: &CancellationToken,
    ) -> String {
        let mut shutdown = std::pin::pin!(shutdown.cancelled());
        let mut ticks = heartbeat_ticks(liveness.interval());
        let mut next_ping_id = 0u64;
        loop {
            let frame = tokio::select! {
                biased;
                frame = frames.next() => frame,
                _ = ticks.tick() => match liveness.on_tick() {
                    Tick::Alive | Tick::Quiet { .. } => continue,
                    Tick::Ping { silent } => {
                        next_ping_id += 1;
                        tracing::trace!(peer = %self.peer, ?silent, "sending Ping");
                        let _ = self.writes.push_header(&Header::new(FrameKind::Ping, next_ping_id));
                        continue;
                    }
                    Tick::Dead { silent } => {
                        return format!("no frame from the server for {silent:?}");
                    }
                },
                () = &mut shutdown => return "client dropped".to_owned(),
            };
            liveness.on_frame();
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return format!("bad frame from server: {error}"),
                None => return "server closed the connection".to_owned(),
            };
            match frame.header.kind {
                FrameKind::Response => {
                    let sender = self.lock_pending().calls.remove(&frame.header.request_id);
                    // No sender: the call timed out or was dropped; its reply has nowhere to go.
                    if let Some(sender) = sender {
                        let _ = sender.send(Ok(frame));
                    }
                }
                FrameKind::Ping => {
                    let _ = self
                        .writes
                        .push_header(&Header::new(FrameKind::Pong, frame.header.request_id));
                }
                FrameKind::Pong => {}
                FrameKind::GoAway => {
                    if frame.header.status == Status::Overloaded {
                        self.refused.store(true, Ordering::Relaxed);
                    }
                    let reason = String::from_utf8_lossy(&frame.body);
                    self.drain(
                        frame.header.request_id,
                        format!("server sent GoAway: {reason}"),
                    );
                }
                FrameKind::Request => return "server sent a request".to_owned(),
            }
        }
    }
}

/// A sent call's reply slot; removes itself from the pending map unless it was answered.
pub(crate) struct Slot<'a> {
    shared: &'a Shared,
    id: u64,
    reply: oneshot::Receiver<Reply>,
    answered: bool,
}

impl Slot<'_> {
    /// Waits for the reply until `deadline`; `timeout` is what the error reports.
    pub(crate) async fn reply(
        mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Frame>, Error> {
        match timeout_at(deadline, &mut self.reply).await {
            Ok(Ok(reply)) => {
                self.answered = true;
                reply.map(Some)
            }
            // The sender is only dropped unanswered if the map itself is dropped.
            Ok(Err(_)) => Err(self.shared.lost()),
            Err(_) => Err(Error::timeout(timeout)),
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.lock_pending().calls.remove(&self.id);
        }
    }
}

fn encode_request<A: Serialize + ?Sized>(
    buf: &mut BytesMut,
    id: u64,
    request: &Request<'_, A>,
    remaining: Duration,
    max_frame_length: usize,
) -> Result<(), Error> {
    let mut header = Header::new(FrameKind::Request, id);
    header.serialization = request.serialization;
    if request.oneway {
        header.flags = Flags::ONEWAY;
    }
    let mut frame = FrameBuilder::begin(buf, &header);
    buf.extend_from_slice(request.service);
    if let Err(error) = protocol::put_str(buf, MetadataTag::Method, request.method) {
        frame.abort(buf);
        return Err(Error::new(ErrorKind::InvalidRequest, error.to_string()));
    }
    // Nobody waits for a oneway call, so it carries no deadline for the server to enforce.
    if !request.oneway {
        protocol::put_timeout(buf, remaining);
    }
    frame.begin_body(buf);
    if let Err(error) = request.serialization.serialize(request.args, buf) {
        frame.abort(buf);
        return Err(error.into());
    }
    frame
        .finish(buf, max_frame_length)
        .map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))
}

/// Request ids are sequential numbers this side picks, never chosen by a peer, so the map needs
/// no flood-resistant hash; a Fibonacci multiply spreads them over the table's high bits, which
/// the standard map's SIMD probing keys on.
#[derive(Default)]
struct RequestIdHasher(u64);

impl Hasher for RequestIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
