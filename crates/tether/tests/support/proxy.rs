//! A fault-injecting TCP proxy for the liveness tests: it sits between a client and a server on
//! 127.0.0.1, forwards the bytes, and on command freezes, delays, resets or closes the
//! connections that go through it, while counting the tether frames that pass each way.
//!
//! ```ignore
//! let proxy = Proxy::start(server.local_addr()).await;
//! let client = Client::connect(proxy.addr()).await?;
//! proxy.set_mode(Mode::Blackhole); // every connection, open or new, now forwards nothing
//! ```
//!
//! # How it works
//!
//! One accept task owns the listener and, in a [`JoinSet`], one task per connection. A
//! connection task dials the upstream server, then pumps each direction in turn: it reads at
//! most [`READ_SIZE`] bytes from one side, holds them until the [`Mode`] lets them go, writes
//! them to the other side, and scans what it wrote for frame headers. The mode and the
//! [`Proxy::kill_connections`] requests reach the tasks through `watch` channels, so a change
//! takes effect at the next await point of every connection, open or new.
//!
//! Dropping the [`Proxy`] aborts the accept task; its `JoinSet` aborts every connection task in
//! turn, and the listener and all sockets close.
//!
//! # Bounds
//!
//! A direction holds at most [`HELD_READS`] reads of at most [`READ_SIZE`] bytes each: past
//! that it stops reading and TCP pushes back on the sender. In [`Mode::Blackhole`] it neither
//! reads nor writes. Frame counting keeps one 24-byte header per direction, never a frame.
//!
//! Every test file compiles the support module, and most of them do not use the proxy.
#![allow(dead_code)]

use std::{collections::HashMap, collections::VecDeque, io, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use tether::protocol::{FrameKind, HEADER_LEN, Header};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::{JoinHandle, JoinSet},
    time::{Duration, Instant},
};

use super::bounded;

/// The most one read from a socket takes in, in bytes.
const READ_SIZE: usize = 16 * 1024;

/// The most reads a direction holds before it stops reading: what is "on the wire" in
/// [`Mode::Latency`], and how far reading may run ahead of a slow receiver in [`Mode::Pass`].
const HELD_READS: usize = 8;

/// How long the accept loop waits after a failed accept (out of file descriptors, say), so that
/// it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How many reads [`Proxy::kill_connections`] spends emptying a socket before it closes it.
const DRAIN_READS: usize = 64;

/// What the proxy does to the connections through it. Switchable at any time with
/// [`Proxy::set_mode`]; a change applies at once to open connections and to new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forward bytes both ways as they come.
    Pass,
    /// Freeze every connection, a cable pulled or a peer process stopped: the proxy stops
    /// reading and stops writing, and keeps both sockets of each connection open. No byte, FIN
    /// or RST reaches either side. What the peers send waits in the kernel's socket buffers
    /// (plus whatever the proxy had already read and not yet written), and once those fill, the
    /// sender's writes block. New connections are accepted, dialled upstream, and frozen too.
    ///
    /// Nothing is discarded, so switching to [`Mode::Pass`] or [`Mode::Latency`] resumes every
    /// frozen connection where it stopped, with the frame streams intact: the held bytes are
    /// delivered late, as after a network partition that healed. A test that wants the frozen
    /// connection to stay dead ends it with [`Mode::Reset`] or [`Proxy::kill_connections`]
    /// before it switches back.
    ///
    /// A peer that closes its socket meanwhile is not noticed until the proxy reads again.
    Blackhole,
    /// Abort every open connection with an RST to both peers (`SO_LINGER` 0, then close), and
    /// abort each new connection the moment it is accepted, without dialling upstream, until
    /// the mode changes. A client's `connect` still succeeds (the kernel completes the handshake
    /// before the proxy accepts); its first read fails with `ConnectionReset`.
    Reset,
    /// Forward both ways, each read held until the given time after the proxy read it, in
    /// order. The delay in force when a read is due decides: shortening or ending the latency
    /// releases held reads sooner.
    Latency(Duration),
}

/// One way through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// From the client that connected to the proxy, to the upstream server.
    ToServer,
    /// From the upstream server back to the client.
    ToClient,
}

/// What the proxy counted so far; see [`Proxy::stats`] and [`Proxy::wait_until`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    connections_accepted: u64,
    open_connections: usize,
    frames: HashMap<(Direction, FrameKind), u64>,
}

impl Stats {
    /// Connections the proxy accepted, those it reset at once included.
    pub(crate) fn connections_accepted(&self) -> u64 {
        self.connections_accepted
    }

    /// Connections accepted and not yet over: dialling upstream, forwarding, or frozen.
    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections
    }

    /// Whole frames of `kind` the proxy wrote in `direction`, on every connection together.
    ///
    /// A frame counts once the proxy has written its last byte onward. On a direction of a
    /// connection whose bytes stop parsing as frames (a bad header), counting stops for good;
    /// forwarding does not.
    pub(crate) fn frames(&self, direction: Direction, kind: FrameKind) -> u64 {
        self.frames.get(&(direction, kind)).copied().unwrap_or(0)
    }
}

/// A fault-injecting TCP proxy on a free port of 127.0.0.1 in front of one upstream address.
/// Dropping it stops its tasks and closes its listener and every connection through it.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

/// What the proxy's handle and its tasks share.
#[derive(Debug)]
struct Shared {
    /// Where each connection is forwarded.
    upstream: SocketAddr,
    /// The mode in force.
    mode: watch::Sender<Mode>,
    /// Bumped by each [`Proxy::kill_connections`]: a change tells the connections open then to
    /// close.
    kills: watch::Sender<u64>,
    /// The counters, and a wake-up for [`Proxy::wait_until`] on each change.
    stats: watch::Sender<Stats>,
}

impl Proxy {
    /// Starts a proxy in [`Mode::Pass`] that listens on a free port of 127.0.0.1 and forwards
    /// each connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = bounded("binding the proxy", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("the proxy binds 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            upstream,
            mode: watch::Sender::new(Mode::Pass),
            kills: watch::Sender::new(0),
            stats: watch::Sender::new(Stats::default()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept_task,
        }
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mode in force.
    pub(crate) fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Switches to `mode`, for the open connections and the new ones.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Closes every connection open now, gracefully: each peer gets a FIN. The mode stays as it
    /// is, and connections made afterwards are served as usual.
    ///
    /// To make the close a FIN and not an RST (which is what a socket closed with unread bytes
    /// sends), the proxy first reads and discards what is waiting on each socket, up to a bound:
    /// a peer that never stops sending may still see an RST.
    pub(crate) fn kill_connections(&self) {
        self.shared.kills.send_modify(|kills| *kills += 1);
    }

    /// A copy of the counters.
    pub(crate) fn stats(&self) -> Stats {
        self.shared.stats.borrow().clone()
    }

    /// Connections accepted so far; see [`Stats::connections_accepted`].
    pub(crate) fn connections_accepted(&self) -> u64 {
        self.shared.stats.borrow().connections_accepted()
    }

    /// Connections open now; see [`Stats::open_connections`].
    pub(crate) fn open_connections(&self) -> usize {
        self.shared.stats.borrow().open_connections()
    }

    /// Frames of `kind` forwarded in `direction` so far; see [`Stats::frames`].
    pub(crate) fn frames(&self, direction: Direction, kind: FrameKind) -> u64 {
        self.shared.stats.borrow().frames(direction, kind)
    }

    /// Waits until `condition` holds for the counters, at most [`WAIT`](super::WAIT), and
    /// returns them; panics naming `what` if it never does.
    pub(crate) async fn wait_until(&self, what: &str, condition: impl Fn(&Stats) -> bool) -> Stats {
        let mut stats = self.shared.stats.subscribe();
        let stats = bounded(what, stats.wait_for(|stats| condition(stats)))
            .await
            .expect("the proxy holds the sender");
        stats.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of connection tasks; dropping the
        // set aborts them, and their sockets close with them.
        self.accept_task.abort();
    }
}

/// Accepts connections until the proxy is dropped, each served by a task of its own.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let client = match accepted {
                    Ok((client, _)) => client,
                    Err(_) => {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                shared.stats.send_modify(|stats| stats.connections_accepted += 1);
                if *shared.mode.borrow() == Mode::Reset {
                    abort(&client);
                    continue;
                }
                // Subscribed here, so that a kill requested from now on reaches the connection.
                let modes = shared.mode.subscribe();
                let kills = shared.kills.subscribe();
                let connection = OpenConnection::new(shared.clone());
                connections.spawn(connection.relay(client, modes, kills));
            }
            // Reaps the finished tasks, so that the set does not grow with every connection.
            Some(_) = connections.join_next() => {}
        }
    }
}

/// One connection through the proxy, counted in [`Stats::open_connections`] while it lives.
struct OpenConnection {
    shared: Arc<Shared>,
}

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> Self {
        shared
            .stats
            .send_modify(|stats| stats.open_connections += 1);
        Self { shared }
    }

    /// Dials upstream and forwards between `client` and the server until both directions end,
    /// a socket fails, the mode turns to [`Mode::Reset`] or a kill arrives.
    async fn relay(
        self,
        client: TcpStream,
        mut modes: watch::Receiver<Mode>,
        mut kills: watch::Receiver<u64>,
    ) {
        let server = match TcpStream::connect(self.shared.upstream).await {
            Ok(server) => server,
            Err(_) => {
                // The nearest a proxy can come to a refused connection.
                abort(&client);
                return;
            }
        };
        // Forward small writes (pings, short calls) at once rather than batching them.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let mut to_server = Pump::new(Direction::ToServer, client_read, server_write);
        let mut to_client = Pump::new(Direction::ToClient, server_read, client_write);
        let stats = &self.shared.stats;
        loop {
            let mode = *modes.borrow_and_update();
            if mode == Mode::Reset {
                break abort_both(to_server, to_client);
            }
            if to_server.is_done() && to_client.is_done() {
                break;
            }
            let stepped = tokio::select! {
                stepped = to_server.step(mode, stats) => stepped,
                stepped = to_client.step(mode, stats) => stepped,
                _ = modes.changed() => continue,
                _ = kills.changed() => break close_both(&mut to_server, &mut to_client).await,
            };
            if stepped.is_err() {
                // One side failed (most often: reset by its peer); pass the reset on.
                break abort_both(to_server, to_client);
            }
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shared
            .stats
            .send_modify(|stats| stats.open_connections -= 1);
    }
}

/// Makes closing `stream` send an RST instead of a FIN: `SO_LINGER` with a zero timeout.
fn abort(stream: &TcpStream) {
    // `set_linger` is deprecated since tokio 1.49 (a non-zero linger blocks the thread on drop);
    // `set_zero_linger`, from 1.50, is the one case tests need.
    let _ = stream.set_zero_linger();
}

/// Closes both sockets of a connection with an RST each.
fn abort_both(to_server: Pump, to_client: Pump) {
    for pump in [to_server, to_client] {
        abort(pump.source.as_ref());
        // A write half shuts its direction down when dropped, which would send a FIN ahead of
        // the RST; forgotten, it leaves the socket to close when the read half drops.
        pump.sink.forget();
    }
}

/// Closes both sockets of a connection with a FIN each, after discarding what is waiting on
/// them (closing a socket with unread bytes sends an RST instead).
async fn close_both(to_server: &mut Pump, to_client: &mut Pump) {
    for pump in [to_server, to_client] {
        pump.discard_unread();
        let _ = pump.sink.shutdown().await;
    }
}

/// One direction of a connection: reads from `source`, holds, writes to `sink`.
struct Pump {
    direction: Direction,
    source: OwnedReadHalf,
    sink: OwnedWriteHalf,
    /// Where reads land before they are copied into `held`.
    scratch: Box<[u8]>,
    /// Reads not yet written, oldest first, with the time each was read.
    held: VecDeque<(Instant, Bytes)>,
    /// When the source's end was read; the sink is shut down once everything before it went.
    source_ended_at: Option<Instant>,
    /// Whether the sink has been shut down: this direction is over.
    done: bool,
    scanner: FrameScanner,
}

/// What a pump's write did.
enum Written {
    /// This many bytes of the oldest held read went out.
    Bytes(usize),
    /// The end of the stream went out: the sink is shut down.
    End,
}

impl Pump {
    fn new(direction: Direction, source: OwnedReadHalf, sink: OwnedWriteHalf) -> Self {
        Self {
            direction,
            source,
            sink,
            scratch: vec![0; READ_SIZE].into_boxed_slice(),
            held: VecDeque::with_capacity(HELD_READS),
            source_ended_at: None,
            done: false,
            scanner: FrameScanner::default(),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// Waits for one thing to happen in this direction under `mode` (a read, a write, or a held
    /// read falling due) and does it. Never finishes while frozen or done.
    ///
    /// Cancel-safe, as the connection's `select!` needs: each branch below is, and the state
    /// changes only after one of them finished.
    async fn step(&mut self, mode: Mode, stats: &watch::Sender<Stats>) -> io::Result<()> {
        if self.done || matches!(mode, Mode::Blackhole | Mode::Reset) {
            return std::future::pending().await;
        }
        let now = Instant::now();
        let can_read = self.source_ended_at.is_none() && self.held.len() < HELD_READS;
        // The next thing to pass on: the oldest held read, or the end once nothing is held.
        let next = self
            .held
            .front()
            .map(|(read_at, _)| *read_at)
            .or(self.source_ended_at);
        let due = next.map(|read_at| match mode {
            Mode::Latency(latency) => read_at + latency,
            _ => read_at,
        });
        let can_write = due.is_some_and(|due| due <= now);
        let wait_until = due.filter(|due| *due > now);
        tokio::select! {
            read = self.source.read(&mut self.scratch), if can_read => {
                match read? {
                    0 => self.source_ended_at = Some(Instant::now()),
                    n => self
                        .held
                        .push_back((Instant::now(), Bytes::copy_from_slice(&self.scratch[..n]))),
                }
            }
            written = write_next(&mut self.sink, self.held.front()), if can_write => {
                match written? {
                    Written::Bytes(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Written::Bytes(n) => self.wrote(n, stats),
                    Written::End => self.done = true,
                }
            }
            () = tokio::time::sleep_until(wait_until.unwrap_or(now)), if wait_until.is_some() => {}
            // Not reached: with nothing to read, something is held or the end is, due or not.
            else => std::future::pending::<()>().await,
        }
        Ok(())
    }

    /// Drops the first `n` bytes of the oldest held read, which went out, and counts the
    /// frames they finish.
    fn wrote(&mut self, n: usize, stats: &watch::Sender<Stats>) {
        let Some((_, bytes)) = self.held.front_mut() else {
            return;
        };
        let written = bytes.split_to(n);
        if bytes.is_empty() {
            self.held.pop_front();
        }
        let (direction, scanner) = (self.direction, &mut self.scanner);
        if scanner.is_broken() {
            return;
        }
        stats.send_if_modified(|stats| {
            let mut counted = false;
            scanner.feed(&written, |kind| {
                *stats.frames.entry((direction, kind)).or_default() += 1;
                counted = true;
            });
            counted
        });
    }

    /// Reads and drops whatever is waiting on the source now, up to [`DRAIN_READS`] reads.
    fn discard_unread(&mut self) {
        for _ in 0..DRAIN_READS {
            match self.source.try_read(&mut self.scratch) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Writes as much of `next` as the sink takes, or shuts the sink down if there is nothing held
/// (the caller only polls this when the end of the stream is due).
async fn write_next(
    sink: &mut OwnedWriteHalf,
    next: Option<&(Instant, Bytes)>,
) -> io::Result<Written> {
    match next {
        Some((_, bytes)) => sink.write(bytes).await.map(Written::Bytes),
        None => sink.shutdown().await.map(|()| Written::End),
    }
}

/// Follows the frames in one direction of a byte stream, header by header, without keeping
/// more than one header.
#[derive(Debug, Default)]
struct FrameScanner {
    /// The header being read.
    header: [u8; HEADER_LEN],
    /// How many bytes of `header` have arrived.
    header_filled: usize,
    /// The frame whose metadata and body are passing, and how many of their bytes are to come.
    in_payload: Option<(FrameKind, u64)>,
    /// A header failed to parse: the stream is out of step, and nothing more is counted.
    broken: bool,
}

impl FrameScanner {
    fn is_broken(&self) -> bool {
        self.broken
    }

    /// Follows `bytes`, the next bytes of the stream, calling `on_frame` for each frame they
    /// finish.
    fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameKind)) {
        while !bytes.is_empty() && !self.broken {
            if let Some((kind, remaining)) = self.in_payload {
                let skipped = remaining.min(bytes.len() as u64);
                bytes = &bytes[skipped as usize..];
                if skipped == remaining {
                    self.in_payload = None;
                    on_frame(kind);
                } else {
                    self.in_payload = Some((kind, remaining - skipped));
                }
                continue;
            }
            let taken = (HEADER_LEN - self.header_filled).min(bytes.len());
            self.header[self.header_filled..][..taken].copy_from_slice(&bytes[..taken]);
            self.header_filled += taken;
            bytes = &bytes[taken..];
            if self.header_filled < HEADER_LEN {
                continue;
            }
            self.header_filled = 0;
            match Header::decode(&self.header) {
                Ok(header) if header.payload_len() == 0 => on_frame(header.kind),
                Ok(header) => self.in_payload = Some((header.kind, header.payload_len())),
                Err(_) => self.broken = true,
            }
        }
    }
}
