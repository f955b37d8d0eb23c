//! What the integration tests share: the `test.Echo` service and its implementation, a server on a
//! free port of 127.0.0.1, clients, bounded waits, and raw frames for the tests that speak the
//! wire protocol by hand.
//!
//! Every test file declares `mod support;` and is a crate of its own that uses only part of
//! this module, hence the one `dead_code` allowance below.

#![allow(dead_code)]

pub(crate) mod ports;
pub(crate) mod proxy;
pub(crate) mod servers;

use std::{
    future::Future,
    net::SocketAddr,
    pin::pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tether::{
    Client, Serialization, Server, ServerConfig,
    protocol::{Flags, Frame, FrameBuilder, FrameCodec, FrameKind, Header, Metadata},
};
use tokio::{
    io::AsyncWriteExt,
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::Notify,
};
use tokio_util::codec::FramedRead;

/// The service name the test service is served under.
pub(crate) const SERVICE: &str = "test.Echo";
/// Its version.
pub(crate) const VERSION: &str = "1.0.0";

/// How long any single wait in a test may take before the test fails instead of hanging.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The error `div` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MathError {
    /// The divisor was zero.
    DivideByZero,
    /// `i64::MIN / -1`.
    Overflow,
}

/// The service every integration test calls.
#[tether::service(name = "test.Echo", version = "1.0.0")]
pub(crate) trait Echo {
    /// Returns its arguments.
    async fn echo(&self, id: u64, text: String) -> (u64, String);
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// `a / b`, or why not.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Always panics.
    async fn panics(&self);
    /// Sleeps `ms` milliseconds, then returns `ms`.
    async fn sleep(&self, ms: u64) -> u64;
    /// Records `value` in the server's [`Seen`].
    #[oneway]
    async fn notify(&self, value: u64);
    /// Does nothing.
    async fn ping(&self);
}

/// What the server's handlers saw, for tests to check and wait on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    /// Values received by `notify`, in arrival order.
    pub(crate) notified: Vec<u64>,
    /// `sleep` calls that started.
    pub(crate) sleeps_started: usize,
    /// `sleep` calls that slept their whole time.
    pub(crate) sleeps_finished: usize,
    /// `sleep` calls whose future the server dropped before they finished.
    pub(crate) sleeps_dropped: usize,
}

/// The state the test service shares with the test: what it saw, and a wake-up on each change.
#[derive(Debug, Default)]
pub(crate) struct State {
    seen: Mutex<Seen>,
    changed: Notify,
}

impl State {
    fn update(&self, change: impl FnOnce(&mut Seen)) {
        change(&mut self.lock());
        self.changed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of what the service saw so far.
    pub(crate) fn seen(&self) -> Seen {
        self.lock().clone()
    }

    /// Waits until `done` holds for what the service saw, at most [`WAIT`]; panics naming `what`
    /// if it never does.
    pub(crate) async fn wait_until(&self, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
        bounded(what, async {
            loop {
                let mut changed = pin!(self.changed.notified());
                changed.as_mut().enable();
                {
                    let seen = self.lock();
                    if done(&seen) {
                        return seen.clone();
                    }
                }
                changed.await;
            }
        })
        .await
    }
}

/// Counts a `sleep` as dropped unless it finishes.
struct SleepGuard<'a> {
    state: &'a State,
    finished: bool,
}

impl Drop for SleepGuard<'_> {
    fn drop(&mut self) {
        let finished = self.finished;
        self.state.update(|seen| {
            if finished {
                seen.sleeps_finished += 1;
            } else {
                seen.sleeps_dropped += 1;
            }
        });
    }
}

/// The implementation of [`Echo`] the test servers run.
#[derive(Debug)]
pub(crate) struct EchoService {
    state: Arc<State>,
}

impl Echo for EchoService {
    async fn echo(&self, id: u64, text: String) -> (u64, String) {
        (id, text)
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivideByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }

    async fn panics(&self) {
        panic!("the test service panics on purpose");
    }

    async fn sleep(&self, ms: u64) -> u64 {
        self.state.update(|seen| seen.sleeps_started += 1);
        let mut guard = SleepGuard {
            state: &self.state,
            finished: false,
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.finished = true;
        ms
    }

    async fn notify(&self, value: u64) {
        self.state.update(|seen| seen.notified.push(value));
    }

    async fn ping(&self) {}
}

/// A server running the test service on a free port of 127.0.0.1 with `config`, and the
/// service's state.
pub(crate) async fn start_server(config: ServerConfig) -> (Server, Arc<State>) {
    let state = Arc::new(State::default());
    let service = EchoService {
        state: state.clone(),
    };
    let server = bounded(
        "binding the server",
        Server::builder()
            .config(config)
            .serve(EchoServer::new(service))
            .bind("127.0.0.1:0"),
    )
    .await
    .expect("the server binds 127.0.0.1:0");
    (server, state)
}

/// A server with the default settings; see [`start_server`].
pub(crate) async fn start_default_server() -> (Server, Arc<State>) {
    start_server(ServerConfig::default()).await
}

/// A client with the default settings, connected to `server`.
pub(crate) async fn connect(server: &Server) -> Client {
    bounded("connecting", Client::connect(server.local_addr()))
        .await
        .expect("the client connects")
}

/// A typed client of the test service with its own connection to `server`.
pub(crate) async fn echo_client(server: &Server) -> EchoClient {
    EchoClient::new(connect(server).await)
}

/// `future`'s output, or a panic naming `what` if it takes longer than [`WAIT`].
pub(crate) async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// Checks that `client` still gets answers: a round trip through `echo` and one through `add`.
pub(crate) async fn assert_serves(client: &EchoClient, what: &str) {
    let reply = bounded(what, client.echo(17, format!("still up: {what}"))).await;
    assert_eq!(
        reply.unwrap_or_else(|e| panic!("{what}: echo failed: {e}")),
        (17, format!("still up: {what}"))
    );
    let sum = bounded(what, client.add(20, 22)).await;
    assert_eq!(
        sum.unwrap_or_else(|e| panic!("{what}: add failed: {e}")),
        42
    );
}

/// Waits until `condition` holds, checking every few milliseconds, at most `within`; for the
/// conditions the library exposes only as counters (calls in flight, connections open).
pub(crate) async fn poll_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(within, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{what}: not within {within:?}");
}

// -------------------------------------------------------------------------------------------------
// The wire by hand.
// -------------------------------------------------------------------------------------------------

/// The arguments of `add` as the generated code sends them: a struct with the parameter names.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AddArgs {
    pub(crate) a: i64,
    pub(crate) b: i64,
}

/// The arguments of `notify`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NotifyArgs {
    pub(crate) value: u64,
}

/// Metadata naming `method` of the test service.
pub(crate) fn metadata_for(method: &str) -> Metadata {
    let mut metadata = Metadata::default();
    metadata.service = Some(SERVICE.into());
    metadata.version = Some(VERSION.into());
    metadata.method = Some(method.into());
    metadata
}

/// One whole frame: `header` (its lengths are filled in), then `metadata` and `body` as given.
pub(crate) fn frame_bytes(header: &Header, metadata: &[u8], body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    let mut frame = FrameBuilder::begin(&mut buf, header);
    buf.put_slice(metadata);
    frame.begin_body(&buf);
    buf.put_slice(body);
    frame
        .finish(&mut buf, usize::MAX)
        .expect("no limit to exceed");
    buf
}

/// A request frame calling `method` of the test service with `args` in `serialization`.
pub(crate) fn request_bytes<A: Serialize>(
    id: u64,
    method: &str,
    serialization: Serialization,
    flags: Flags,
    args: &A,
) -> BytesMut {
    let mut header = Header::new(FrameKind::Request, id);
    header.serialization = serialization;
    header.flags = flags;
    let mut metadata = BytesMut::new();
    metadata_for(method)
        .encode(&mut metadata)
        .expect("the metadata fits");
    let mut body = BytesMut::new();
    serialization
        .serialize(args, &mut body)
        .expect("the arguments encode");
    frame_bytes(&header, &metadata, &body)
}

/// A Ping frame.
pub(crate) fn ping_bytes(id: u64) -> BytesMut {
    frame_bytes(&Header::new(FrameKind::Ping, id), &[], &[])
}

/// A TCP connection to a server, spoken to frame by frame.
#[derive(Debug)]
pub(crate) struct RawConnection {
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    write: OwnedWriteHalf,
}

impl RawConnection {
    /// Connects to `addr`.
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        let stream = bounded("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        let (read, write) = stream.into_split();
        Self {
            frames: FramedRead::new(read, FrameCodec::new()),
            write,
        }
    }

    /// Writes `bytes` as they are.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        bounded("raw write", self.write.write_all(bytes))
            .await
            .expect("raw write");
    }

    /// The next frame from the server; panics if there is none within [`WAIT`].
    pub(crate) async fn next_frame(&mut self, what: &str) -> Frame {
        match bounded(what, self.frames.next()).await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => panic!("{what}: bad frame from the server: {error}"),
            None => panic!("{what}: the server closed the connection"),
        }
    }

    /// Checks that the server closes the connection without sending another frame.
    pub(crate) async fn assert_closed(&mut self, what: &str) {
        match bounded(what, self.frames.next()).await {
            None => {}
            Some(frame) => panic!("{what}: expected the end of the stream, got {frame:?}"),
        }
    }

    /// Sends a Ping with `id` and checks that the next frame back is its Pong.
    pub(crate) async fn assert_pong(&mut self, id: u64, what: &str) {
        self.send(&ping_bytes(id)).await;
        let frame = self.next_frame(what).await;
        assert_eq!(
            (frame.header.kind, frame.header.request_id),
            (FrameKind::Pong, id),
            "{what}: expected the Pong of Ping {id}, got {frame:?}"
        );
    }
}

// -------------------------------------------------------------------------------------------------
// Liveness: servers on a chosen port, and raw connections read to their end.
// -------------------------------------------------------------------------------------------------

/// A server running the test service on `listener` with `config`, and the service's state;
/// see [`start_server`]. For a server on a [`ports::ReservedPort`], or restarted where it was
/// ([`ports::rebind`]).
pub(crate) async fn start_server_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
) -> (Server, Arc<State>) {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let state = Arc::new(State::default());
    let service = EchoService {
        state: state.clone(),
    };
    let server = bounded(
        "starting the server",
        Server::builder()
            .config(config)
            .serve(EchoServer::new(service))
            .listen(listener),
    )
    .await
    .unwrap_or_else(|e| panic!("the server serves on {addr}: {e}"));
    (server, state)
}

impl RawConnection {
    /// Speaks frame by frame on a stream accepted from a listener: the raw side plays the server.
    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            frames: FramedRead::new(read, FrameCodec::new()),
            write,
        }
    }

    /// Reads frames until the peer closes the connection, at most [`WAIT`], and returns them;
    /// panics on a frame that does not decode or a read that fails.
    pub(crate) async fn frames_until_closed(&mut self, what: &str) -> Vec<Frame> {
        bounded(what, async {
            let mut frames = Vec::new();
            while let Some(frame) = self.frames.next().await {
                match frame {
                    Ok(frame) => frames.push(frame),
                    Err(error) => panic!("{what}: after {frames:?}: {error}"),
                }
            }
            frames
        })
        .await
    }
}
