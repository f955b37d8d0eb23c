//! The fault-injecting proxy of `support::proxy`, checked on its own before the liveness tests
//! lean on it: against a plain TCP echo server for the bytes, and against a real tether server
//! and client for the frames.

mod support;

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tether::{Client, Serialization, protocol::Flags, protocol::FrameKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

use support::{
    AddArgs, EchoClient, WAIT, assert_serves, bounded, ping_bytes, poll_until,
    proxy::{Direction, Mode, Proxy},
    request_bytes, start_default_server,
};

/// How long a check that nothing arrives waits: the one deliberate wait of these tests.
const QUIET: Duration = Duration::from_millis(300);

/// The delay the latency tests add in each direction.
const LATENCY: Duration = Duration::from_millis(100);

/// A plain TCP echo server on a free port of 127.0.0.1, no tether in it: what the proxy does to
/// bytes, seen without a protocol on top.
#[derive(Debug)]
struct TcpEcho {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    async fn start() -> Self {
        let listener = bounded("binding the echo server", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("the echo server binds 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let received = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(Self::serve(listener, received.clone()));
        Self {
            addr,
            received,
            task,
        }
    }

    /// Bytes received so far, on every connection together.
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    async fn serve(listener: TcpListener, received: Arc<AtomicUsize>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(Self::echo(stream, received.clone()));
                    }
                }
                Some(_) = connections.join_next() => {}
            }
        }
    }

    /// Sends back what arrives until the end of the stream, then closes.
    async fn echo(mut stream: TcpStream, received: Arc<AtomicUsize>) {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            received.fetch_add(n, Ordering::SeqCst);
            if stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain TCP connection to `addr`.
async fn open(addr: SocketAddr) -> TcpStream {
    let stream = bounded("connecting to the proxy", TcpStream::connect(addr))
        .await
        .expect("the proxy accepts");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// Sends `bytes` and checks that the same bytes come back.
async fn round_trip(stream: &mut TcpStream, bytes: &[u8], what: &str) {
    let (mut read, mut write) = stream.split();
    let mut back = vec![0; bytes.len()];
    // Both at once, so that a payload larger than the socket buffers cannot deadlock.
    let (written, echoed) = bounded(what, async {
        tokio::join!(write.write_all(bytes), read.read_exact(&mut back))
    })
    .await;
    written.unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
    echoed.unwrap_or_else(|e| panic!("{what}: echo failed: {e}"));
    assert!(back == bytes, "{what}: the echo differs from what was sent");
}

/// Writes `bytes` and does not wait for anything back.
async fn send(stream: &mut TcpStream, bytes: &[u8], what: &str) {
    bounded(what, stream.write_all(bytes))
        .await
        .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
}

/// Reads exactly `expected.len()` bytes and checks them.
async fn receive(stream: &mut TcpStream, expected: &[u8], what: &str) {
    let mut back = vec![0; expected.len()];
    bounded(what, stream.read_exact(&mut back))
        .await
        .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    assert!(
        back == expected,
        "{what}: got {back:?}, expected {expected:?}"
    );
}

/// Checks that nothing arrives on `stream` for [`QUIET`], not even the end of the stream: the
/// connection is open and silent.
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    match tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
        Err(_elapsed) => {}
        Ok(Ok(0)) => panic!("{what}: the connection closed"),
        Ok(Ok(n)) => panic!("{what}: {n} bytes arrived: {:?}", &buf[..n]),
        Ok(Err(error)) => panic!("{what}: the connection failed: {error}"),
    }
}

/// Checks that the next read ends the stream with a FIN: no byte, no error.
async fn assert_fin(stream: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    match bounded(what, stream.read(&mut buf)).await {
        Ok(0) => {}
        other => panic!("{what}: expected the end of the stream, got {other:?}"),
    }
}

/// Checks that the next read fails with a connection reset.
async fn assert_reset(stream: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    match bounded(what, stream.read(&mut buf)).await {
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected a connection reset, got {other:?}"),
    }
}

/// A typed tether client connected through `proxy`.
async fn client_through(proxy: &Proxy) -> EchoClient {
    let client = bounded(
        "connecting through the proxy",
        Client::connect(proxy.addr()),
    )
    .await
    .expect("the client connects through the proxy");
    EchoClient::new(client)
}

#[tokio::test]
async fn pass_forwards_bytes_both_ways() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut stream = open(proxy.addr()).await;
    round_trip(&mut stream, b"hello", "a short echo").await;
    // Far more than the proxy holds per direction: it has to push back and keep going.
    let large: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    round_trip(&mut stream, &large, "a 1 MiB echo").await;
    assert_eq!(echo.received(), 5 + large.len());
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.open_connections(), 1);

    drop(stream);
    proxy
        .wait_until(
            "the proxy closes the connection after both ends did",
            |stats| stats.open_connections() == 0,
        )
        .await;
}

#[tokio::test]
async fn pass_carries_a_tether_call_and_counts_its_frames() {
    let (server, _state) = start_default_server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let echo = client_through(&proxy).await;
    let reply = bounded("echo through the proxy", echo.echo(7, "via proxy".into())).await;
    assert_eq!(reply.expect("echo"), (7, "via proxy".to_owned()));

    // The reply reached the client; the count follows the write that carried it.
    let stats = proxy
        .wait_until("the call's frames counted", |stats| {
            stats.frames(Direction::ToServer, FrameKind::Request) >= 1
                && stats.frames(Direction::ToClient, FrameKind::Response) >= 1
        })
        .await;
    assert_eq!(stats.frames(Direction::ToServer, FrameKind::Request), 1);
    assert_eq!(stats.frames(Direction::ToClient, FrameKind::Response), 1);
    assert_eq!(stats.frames(Direction::ToClient, FrameKind::Request), 0);
    assert_eq!(stats.frames(Direction::ToServer, FrameKind::Response), 0);
    assert_eq!(stats.connections_accepted(), 1);
}

#[tokio::test]
async fn frames_are_counted_across_reads_and_garbage_stops_only_the_count() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut stream = open(proxy.addr()).await;

    // Two frames in one write.
    let mut pings = ping_bytes(1);
    pings.extend_from_slice(&ping_bytes(2));
    round_trip(&mut stream, &pings, "two pings in one write").await;

    // One frame in three writes, each echoed before the next goes, so the proxy reads them
    // apart: part of the header, the rest of the header and some metadata, the rest.
    let request = request_bytes(
        1,
        "add",
        Serialization::Json,
        Flags::NONE,
        &AddArgs { a: 1, b: 2 },
    );
    assert!(request.len() > 30, "the request has metadata");
    for (i, piece) in [&request[..10], &request[10..30], &request[30..]]
        .into_iter()
        .enumerate()
    {
        let partial = i < 2;
        round_trip(&mut stream, piece, "a piece of a request").await;
        if partial {
            assert_eq!(
                proxy.frames(Direction::ToServer, FrameKind::Request),
                0,
                "a frame counts only once whole"
            );
        }
    }
    let expected = |stats: &support::proxy::Stats| {
        [Direction::ToServer, Direction::ToClient]
            .iter()
            .all(|&direction| {
                stats.frames(direction, FrameKind::Ping) == 2
                    && stats.frames(direction, FrameKind::Request) == 1
            })
    };
    proxy
        .wait_until("two pings and a request counted each way", expected)
        .await;

    // 24 bytes that are no header, then a good frame: forwarded, but no longer counted.
    let mut garbage = b"GET / HTTP/1.1\r\n\r\n______".to_vec();
    assert_eq!(garbage.len(), 24);
    garbage.extend_from_slice(&ping_bytes(3));
    round_trip(&mut stream, &garbage, "garbage").await;
    // The proxy scans each write before it reads the next, so once this comes back the
    // garbage and the ping after it have been scanned both ways.
    round_trip(&mut stream, b"sync", "after the garbage").await;
    let stats = proxy.stats();
    assert!(
        expected(&stats),
        "nothing counted after the garbage: {stats:?}"
    );
}

#[tokio::test]
async fn blackhole_freezes_open_and_new_connections_and_pass_resumes_them() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut open_before = open(proxy.addr()).await;
    round_trip(&mut open_before, b"before", "before the blackhole").await;

    proxy.set_mode(Mode::Blackhole);
    send(
        &mut open_before,
        b"frozen one",
        "a write into the blackhole",
    )
    .await;
    let mut opened_during = open(proxy.addr()).await;
    send(
        &mut opened_during,
        b"frozen two",
        "a write on a new connection",
    )
    .await;
    tokio::join!(
        assert_silent(&mut open_before, "the connection open before the blackhole"),
        assert_silent(
            &mut opened_during,
            "the connection opened during the blackhole"
        ),
    );
    assert_eq!(
        echo.received(),
        b"before".len(),
        "the server received nothing"
    );
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(proxy.open_connections(), 2, "frozen, not closed");

    // Nothing was discarded: the held bytes go through, late and whole.
    proxy.set_mode(Mode::Pass);
    receive(&mut open_before, b"frozen one", "the first held echo").await;
    receive(&mut opened_during, b"frozen two", "the second held echo").await;
    round_trip(&mut open_before, b"after", "after the blackhole").await;
    round_trip(&mut opened_during, b"after", "after the blackhole").await;
}

#[tokio::test]
async fn blackhole_holds_a_tether_reply_until_pass() {
    let (server, state) = start_default_server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let echo = client_through(&proxy).await;
    let mut call = tokio::spawn({
        let echo = echo.clone();
        async move { echo.sleep(100).await }
    });
    state
        .wait_until("the call reaches the server", |seen| {
            seen.sleeps_started == 1
        })
        .await;

    proxy.set_mode(Mode::Blackhole);
    state
        .wait_until("the server finishes the call", |seen| {
            seen.sleeps_finished == 1
        })
        .await;
    assert!(
        tokio::time::timeout(QUIET, &mut call).await.is_err(),
        "the reply got through the blackhole"
    );
    assert_eq!(proxy.frames(Direction::ToClient, FrameKind::Response), 0);

    proxy.set_mode(Mode::Pass);
    let reply = bounded("the held reply", call)
        .await
        .expect("the call task");
    assert_eq!(reply.expect("sleep"), 100);
    assert_serves(&echo, "after the blackhole").await;
}

#[tokio::test]
async fn reset_aborts_open_and_new_connections() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut open_before = open(proxy.addr()).await;
    round_trip(&mut open_before, b"before", "before the reset").await;

    proxy.set_mode(Mode::Reset);
    assert_reset(&mut open_before, "the connection open before the reset").await;
    // The kernel completes the handshake before the proxy accepts, so the connect succeeds.
    let mut opened_during = open(proxy.addr()).await;
    assert_reset(&mut opened_during, "a connection opened during the reset").await;
    proxy
        .wait_until("no connection left open", |stats| {
            stats.open_connections() == 0
        })
        .await;
    assert_eq!(proxy.connections_accepted(), 2);

    proxy.set_mode(Mode::Pass);
    let mut opened_after = open(proxy.addr()).await;
    round_trip(&mut opened_after, b"after", "after the reset").await;
}

#[tokio::test]
async fn reset_closes_a_tether_client() {
    let (server, _state) = start_default_server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let echo = client_through(&proxy).await;
    assert_serves(&echo, "before the reset").await;

    proxy.set_mode(Mode::Reset);
    poll_until("the client sees the reset", WAIT, || {
        echo.client().is_closed()
    })
    .await;
    let call = bounded("a call after the reset", echo.add(1, 2)).await;
    assert!(call.is_err(), "a call on a reset connection: {call:?}");
}

#[tokio::test]
async fn latency_delays_each_direction_and_keeps_the_order() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut stream = open(proxy.addr()).await;
    round_trip(&mut stream, b"warm", "before the latency").await;

    proxy.set_mode(Mode::Latency(LATENCY));
    let started = Instant::now();
    for piece in [&b"one "[..], b"two ", b"three"] {
        send(&mut stream, piece, "a write under latency").await;
    }
    receive(&mut stream, b"one two three", "the delayed echo, in order").await;
    let elapsed = started.elapsed();
    // The latency applies on the way there and on the way back.
    assert!(
        elapsed >= 2 * LATENCY,
        "a round trip took {elapsed:?}, under twice the latency of {LATENCY:?}"
    );

    proxy.set_mode(Mode::Pass);
    round_trip(&mut stream, b"fast again", "after the latency").await;
}

#[tokio::test]
async fn latency_delays_a_tether_call() {
    let (server, _state) = start_default_server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let echo = client_through(&proxy).await;
    assert_serves(&echo, "before the latency").await;

    proxy.set_mode(Mode::Latency(LATENCY));
    let started = Instant::now();
    let sum = bounded("add under latency", echo.add(2, 3)).await;
    let elapsed = started.elapsed();
    assert_eq!(sum.expect("add"), 5);
    assert!(
        elapsed >= 2 * LATENCY,
        "a call took {elapsed:?}, under twice the latency of {LATENCY:?}"
    );
}

#[tokio::test]
async fn kill_connections_closes_open_connections_with_a_fin() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut first = open(proxy.addr()).await;
    let mut second = open(proxy.addr()).await;
    round_trip(&mut first, b"first", "the first connection").await;
    round_trip(&mut second, b"second", "the second connection").await;

    proxy.kill_connections();
    assert_fin(&mut first, "the first connection, killed").await;
    assert_fin(&mut second, "the second connection, killed").await;
    proxy
        .wait_until("no connection left open", |stats| {
            stats.open_connections() == 0
        })
        .await;

    // The mode is untouched and new connections are served.
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut third = open(proxy.addr()).await;
    round_trip(&mut third, b"third", "a connection after the kill").await;
    assert_eq!(proxy.connections_accepted(), 3);
}

#[tokio::test]
async fn kill_connections_closes_a_frozen_connection_with_a_fin() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let mut stream = open(proxy.addr()).await;
    round_trip(&mut stream, b"before", "before the blackhole").await;

    proxy.set_mode(Mode::Blackhole);
    // Bytes the proxy has not read: closing over them would send an RST, not a FIN.
    send(&mut stream, b"never read", "a write into the blackhole").await;
    assert_silent(&mut stream, "the frozen connection").await;
    proxy.kill_connections();
    assert_fin(&mut stream, "the frozen connection, killed").await;
    assert_eq!(proxy.mode(), Mode::Blackhole);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_listener_and_connections() {
    let echo = TcpEcho::start().await;
    let proxy = Proxy::start(echo.addr).await;
    let addr = proxy.addr();
    let mut stream = open(addr).await;
    round_trip(&mut stream, b"before", "before the drop").await;

    drop(proxy);
    assert_fin(&mut stream, "a connection of a dropped proxy").await;
    // The listener closed before the connections did.
    let refused = bounded("connecting to a dropped proxy", TcpStream::connect(addr)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused),
        "connecting to a dropped proxy: {refused:?}"
    );
}

// -------------------------------------------------------------------------------------------------
// The other test support the fault tests stand on: ports without races.
// -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reserved_port_refuses_until_it_listens_and_cannot_be_taken() {
    let reserved = support::ports::ReservedPort::new();
    let addr = reserved.addr();
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "connected to a port that only reserves");
    let taken = std::net::TcpListener::bind(addr);
    assert!(taken.is_err(), "another socket bound the reserved {addr}");
    let listener = reserved.listen();
    let (accepted, connected) = tokio::join!(listener.accept(), TcpStream::connect(addr));
    accepted.expect("the listener accepts");
    connected.expect("the client connects");
}

#[tokio::test]
async fn a_server_binds_its_address_again_after_a_shutdown() {
    let (server, _state) = start_default_server().await;
    let addr = server.local_addr();
    let client = support::echo_client(&server).await;
    assert_serves(&client, "before the restart").await;
    // Its connections linger in TIME_WAIT after the close: `rebind` sets SO_REUSEADDR.
    server.shutdown().await;
    let listener = support::ports::rebind(addr).await;
    assert_eq!(listener.local_addr().expect("its address"), addr);
    let (again, _state) = support::start_server_on(listener, tether::ServerConfig::default()).await;
    let client = support::echo_client(&again).await;
    assert_serves(&client, "after the restart").await;
}

#[tokio::test]
async fn a_bind_error_names_the_address_and_its_cause() {
    let (server, _state) = start_default_server().await;
    let addr = server.local_addr();
    let error = tether::Server::builder()
        .bind(addr)
        .await
        .expect_err("the address is taken");
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("cannot bind {addr}")) && shown.contains("in use"),
        "{shown}"
    );
    assert_eq!(error.kind(), tether::ErrorKind::Io);
}
