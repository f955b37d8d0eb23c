//! Liveness on real sockets: heartbeats both ways, dead connections found without a packet
//! saying so, reconnects with backoff, the connection states a caller sees, and GoAway.
//!
//! Faults come from the proxy of `support::proxy`. Intervals are short (200 ms) so that each
//! test takes about a second; every wait is bounded, and each one waits for an event (a state
//! change, a call's end, a frame, a counter the proxy or the server exposes), never for time to
//! pass. Run with `--nocapture` to read the detection and reconnect times the tests measure.

mod support;

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tether::{
    Backoff, CallOptions, Client, ClientConfig, ConnectionState, Error, ServerConfig,
    protocol::FrameKind,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tracing_subscriber::{Layer, layer::SubscriberExt};

use support::{
    EchoClient, RawConnection, State, WAIT, assert_serves, bounded, poll_until,
    ports::ReservedPort,
    proxy::{Direction, Mode, Proxy},
    start_server, start_server_on,
};

/// The heartbeat interval of both sides in most tests.
const INTERVAL: Duration = Duration::from_millis(200);
/// The idle timeout of both sides in most tests: three intervals, the default ratio.
const IDLE: Duration = Duration::from_millis(600);
/// What a detection may take beyond the idle timeout and one interval (the tick that notices
/// comes up to one interval after the last frame): scheduling, and the round of tasks that
/// passes the news on.
const MARGIN: Duration = Duration::from_millis(400);
/// The timeout of the calls a blackhole catches in flight: far longer than detection takes.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long those calls would sleep on the server.
const SLEEP_MS: u64 = 5000;
/// How many calls a blackhole catches in flight.
const IN_FLIGHT: usize = 3;

/// A backoff without jitter, so that its delays can be checked exactly.
fn backoff(initial: Duration, multiplier: f64, max: Duration) -> Backoff {
    let mut backoff = Backoff::default();
    backoff.initial = initial;
    backoff.multiplier = multiplier;
    backoff.max = max;
    backoff.jitter = 0.0;
    backoff
}

/// The `n`th delay (from 1) of [`backoff`]`(initial, multiplier, max)`.
fn nth_delay(initial: Duration, multiplier: f64, max: Duration, n: u32) -> Duration {
    let exponent = i32::try_from(n - 1).expect("a small attempt number");
    initial.mul_f64(multiplier.powi(exponent)).min(max)
}

/// Client settings with the given heartbeat interval and idle timeout, and reconnects after
/// 50 ms, 100 ms, then every 200 ms.
fn client_config(interval: Duration, idle: Duration) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.heartbeat_interval = interval;
    config.idle_timeout = Some(idle);
    config.reconnect = backoff(Duration::from_millis(50), 2.0, Duration::from_millis(200));
    config
}

/// Server settings with the given heartbeat interval and idle timeout.
fn server_config(interval: Duration, idle: Duration) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.heartbeat_interval = interval;
    config.idle_timeout = Some(idle);
    config
}

/// A client connected to `addr` with `config`.
async fn connect(addr: SocketAddr, config: ClientConfig) -> Client {
    bounded("connecting", Client::builder().config(config).connect(addr))
        .await
        .expect("the client connects")
}

/// Options for calls that may take up to [`CALL_TIMEOUT`].
fn patient() -> CallOptions {
    CallOptions::default().with_timeout(CALL_TIMEOUT)
}

/// Waits for the next state published on `states` and returns it.
async fn next_state(
    states: &mut tokio::sync::watch::Receiver<ConnectionState>,
    what: &str,
) -> ConnectionState {
    bounded(what, states.changed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the client's supervisor is gone"));
    states.borrow_and_update().clone()
}

// -------------------------------------------------------------------------------------------------
// Blackhole: a connection that goes silent with both sockets open.
// -------------------------------------------------------------------------------------------------

/// A relay in front of a server that forwards the connections it accepts while open and closes
/// at once those it accepts while shut.
///
/// Behind the proxy, it keeps away from the server the connections a client opens during a
/// blackhole (the proxy accepts them, dials upstream and freezes them): otherwise the client's
/// reconnects, each frozen in turn, would reach the server too, and the server's count of open
/// connections would no longer show when the blackholed one closed.
#[derive(Debug)]
struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Gate {
    /// An open gate on a free port of 127.0.0.1 in front of `upstream`.
    async fn start(upstream: SocketAddr) -> Self {
        let listener = bounded("binding the gate", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("the gate binds 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let open = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(Self::relay(listener, upstream, open.clone()));
        Self { addr, open, task }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens or shuts the gate for the connections accepted from now on; those already
    /// forwarded are left alone.
    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }

    async fn relay(listener: TcpListener, upstream: SocketAddr, open: Arc<AtomicBool>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    connections.spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
                Some(_) = connections.join_next() => {}
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // The task owns the listener and the set of relays: both go with it.
        self.task.abort();
    }
}

/// A client and a server, connected through a [`Gate`] and a [`Proxy`], both sides with
/// heartbeats every [`INTERVAL`] and an idle timeout of [`IDLE`].
struct Blackholed {
    server: tether::Server,
    state: Arc<State>,
    gate: Gate,
    proxy: Proxy,
    client: Client,
    echo: EchoClient,
}

/// How long each side took to notice a blackhole, from the moment the proxy froze.
struct Detection {
    client_state: Duration,
    state_after: ConnectionState,
    calls_failed: Vec<Duration>,
    server_closed: Duration,
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client left Ready after {:?} ({}), its calls in flight failed after {:?}; \
             server closed the connection after {:?}",
            self.client_state, self.state_after, self.calls_failed, self.server_closed
        )
    }
}

impl Blackholed {
    async fn start() -> Self {
        let (server, state) = start_server(server_config(INTERVAL, IDLE)).await;
        let gate = Gate::start(server.local_addr()).await;
        let proxy = Proxy::start(gate.addr()).await;
        let client = connect(proxy.addr(), client_config(INTERVAL, IDLE)).await;
        let echo = EchoClient::new(client.clone());
        assert_serves(&echo, "before the blackhole").await;
        Self {
            server,
            state,
            gate,
            proxy,
            client,
            echo,
        }
    }

    /// Puts [`IN_FLIGHT`] long calls in flight, freezes the proxy, and measures how long the
    /// client and the server take to give up on the connection; checks that each is within
    /// the idle timeout, one interval and [`MARGIN`].
    async fn blackhole(&self) -> Detection {
        let slow = self.echo.with_options(patient());
        let calls: Vec<JoinHandle<(Result<u64, Error>, Instant)>> = (0..IN_FLIGHT)
            .map(|_| {
                let slow = slow.clone();
                tokio::spawn(async move { (slow.sleep(SLEEP_MS).await, Instant::now()) })
            })
            .collect();
        self.state
            .wait_until("the calls run on the server", |seen| {
                seen.sleeps_started == IN_FLIGHT
            })
            .await;
        assert_eq!(self.server.connections(), 1);
        assert_eq!(self.client.in_flight(), IN_FLIGHT);

        // From now on the client's reconnects stop at the gate.
        self.gate.set_open(false);
        let mut states = self.client.watch_state();
        assert!(states.borrow_and_update().is_ready());
        self.proxy.set_mode(Mode::Blackhole);
        let frozen = Instant::now();

        let client_side = async {
            let state = next_state(&mut states, "the client leaves Ready").await;
            (frozen.elapsed(), state)
        };
        let calls_side = async {
            let mut failed = Vec::new();
            for call in calls {
                let (result, ended) = bounded("a call in flight", call)
                    .await
                    .expect("the calling task");
                let error = result.expect_err("a call caught in the blackhole fails");
                assert!(error.is_connection_lost(), "{error:?}");
                failed.push(ended - frozen);
            }
            failed
        };
        let server_side = async {
            poll_until("the server closes the connection", WAIT, || {
                self.server.connections() == 0
            })
            .await;
            frozen.elapsed()
        };
        let ((client_state, state_after), calls_failed, server_closed) =
            tokio::join!(client_side, calls_side, server_side);
        let detection = Detection {
            client_state,
            state_after,
            calls_failed,
            server_closed,
        };
        eprintln!("blackhole detection: {detection}");

        let bound = IDLE + INTERVAL + MARGIN;
        assert!(
            detection.client_state < bound,
            "the client took {:?} to leave Ready",
            detection.client_state
        );
        for failed in &detection.calls_failed {
            assert!(*failed < bound, "a call in flight took {failed:?} to fail");
        }
        assert!(
            detection.server_closed < bound,
            "the server took {:?} to close the connection",
            detection.server_closed
        );
        // Death came from silence, not from a packet.
        assert!(detection.client_state >= IDLE && detection.server_closed >= IDLE);
        // The server let its handlers run on: they belong to no connection now.
        assert_eq!(self.state.seen().sleeps_finished, 0);
        detection
    }
}

#[tokio::test]
async fn both_sides_declare_a_blackholed_connection_dead_and_fail_its_calls() {
    let setup = Blackholed::start().await;
    let detection = setup.blackhole().await;
    assert!(
        matches!(
            detection.state_after,
            ConnectionState::Reconnecting { ref reason, .. } if reason.contains("no frame")
        ),
        "the client left Ready for its idle timeout: {}",
        detection.state_after
    );
    // The client's calls failed at once, each long before its own timeout.
    assert!(detection.calls_failed.iter().all(|t| *t < CALL_TIMEOUT / 4));
}

#[tokio::test]
async fn after_a_blackhole_heals_the_client_reconnects_by_itself() {
    let setup = Blackholed::start().await;
    setup.blackhole().await;

    setup.gate.set_open(true);
    setup.proxy.set_mode(Mode::Pass);
    let healed = Instant::now();
    // The connections the client opened during the blackhole resume with nothing behind them
    // (the gate closed them) and end; a call that lands on one fails as lost and is made again.
    // Which connection serves in the end does not matter.
    let retrying = setup.echo.with_options(
        CallOptions::default()
            .with_timeout(IDLE + INTERVAL + MARGIN)
            .with_wait_for_ready(true),
    );
    let mut failed = Vec::new();
    let reply = bounded("a call after the heal", async {
        loop {
            match retrying.echo(9, "healed".to_owned()).await {
                Ok(reply) => break reply,
                Err(error) => {
                    assert!(
                        error.is_connection_lost() || error.is_unavailable() || error.is_timeout(),
                        "{error:?}"
                    );
                    failed.push(error.kind());
                }
            }
        }
    })
    .await;
    let reconnected = healed.elapsed();
    eprintln!(
        "heal: first successful call {reconnected:?} after the proxy passed again \
         (failed first: {failed:?})"
    );
    assert_eq!(reply, (9, "healed".to_owned()));
    assert!(
        reconnected < IDLE + INTERVAL + MARGIN,
        "the client took {reconnected:?} to serve again"
    );
    assert!(setup.client.state().is_ready(), "{}", setup.client.state());
    assert_serves(&setup.echo, "after the heal").await;
    poll_until("the server serves one connection", WAIT, || {
        setup.server.connections() == 1
    })
    .await;
}

// -------------------------------------------------------------------------------------------------
// Heartbeats: only on a quiet connection, and answered.
// -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_busy_connection_sends_no_ping_and_a_quiet_one_pings_and_lives() {
    const FAST: Duration = Duration::from_millis(100);
    const LOAD: Duration = Duration::from_millis(1500);
    let mut config = ServerConfig::default();
    config.heartbeat_interval = FAST;
    let (server, _state) = start_server(config).await;
    let proxy = Proxy::start(server.local_addr()).await;
    let mut config = client_config(FAST, 3 * FAST);
    config.idle_timeout = None;
    let client = connect(proxy.addr(), config).await;
    let mut states = client.watch_state();
    let echo = EchoClient::new(client.clone());

    // Steady load, from the first moment: one call after another for 15 intervals.
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < LOAD {
        let reply = bounded("a call under load", echo.echo(calls, "load".to_owned())).await;
        assert_eq!(reply.expect("echo under load"), (calls, "load".to_owned()));
        calls += 1;
    }
    let stats = proxy.stats();
    let pings =
        [Direction::ToServer, Direction::ToClient].map(|d| stats.frames(d, FrameKind::Ping));
    eprintln!("busy connection: {calls} calls in {LOAD:?}, Pings to server/client: {pings:?}");
    assert_eq!(
        stats.frames(Direction::ToServer, FrameKind::Request),
        calls,
        "the proxy counted the load"
    );
    assert_eq!(pings, [0, 0], "Pings on a busy connection");

    // Quiet now: Pings go out (so the count above could see them), the other side answers each
    // with a Pong, and the connection outlives its idle timeout of three intervals.
    let stats = proxy
        .wait_until("Pings and Pongs flow on the quiet connection", |stats| {
            let count = |kind| {
                stats.frames(Direction::ToServer, kind) + stats.frames(Direction::ToClient, kind)
            };
            count(FrameKind::Ping) >= 6 && count(FrameKind::Pong) >= 6
        })
        .await;
    let quiet = started.elapsed() - LOAD;
    eprintln!(
        "quiet connection after {quiet:?}: Pings to server/client {}/{}, Pongs {}/{}",
        stats.frames(Direction::ToServer, FrameKind::Ping),
        stats.frames(Direction::ToClient, FrameKind::Ping),
        stats.frames(Direction::ToServer, FrameKind::Pong),
        stats.frames(Direction::ToClient, FrameKind::Pong),
    );
    assert!(quiet > 3 * FAST, "outlived the idle timeout: {quiet:?}");
    assert!(
        !states.has_changed().expect("the supervisor runs"),
        "the connection stayed up: {}",
        *states.borrow_and_update()
    );
    assert!(client.state().is_ready());
    assert_eq!(proxy.connections_accepted(), 1, "no reconnect");
    assert_eq!(server.connections(), 1);
    assert_serves(&echo, "after the quiet time").await;
}

#[tokio::test]
async fn the_server_closes_a_client_that_says_nothing() {
    let (server, _state) = start_server(server_config(INTERVAL, IDLE)).await;
    let connected = Instant::now();
    let mut raw = RawConnection::open(server.local_addr()).await;
    poll_until("the server counts the connection", WAIT, || {
        server.connections() == 1
    })
    .await;
    let frames = raw
        .frames_until_closed("the server closes the silent connection")
        .await;
    let closed = connected.elapsed();
    let kinds: Vec<_> = frames.iter().map(|frame| frame.header.kind).collect();
    eprintln!("silent client: closed by the server after {closed:?}, having been sent {kinds:?}");
    // The server is the passive side: silent for two intervals, Ping; three, the idle timeout:
    // close.
    assert_eq!(kinds, [FrameKind::Ping]);
    assert!(
        closed >= IDLE && closed < IDLE + INTERVAL + MARGIN,
        "closed after {closed:?}"
    );
    poll_until("the server forgets the connection", MARGIN, || {
        server.connections() == 0
    })
    .await;
}

// -------------------------------------------------------------------------------------------------
// The states a caller sees.
// -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_lazy_client_backs_off_until_its_server_starts_then_serves() {
    let initial = Duration::from_millis(50);
    let max = Duration::from_millis(200);
    // Bound but not listening: every attempt is refused until the server takes the port over.
    let port = ReservedPort::new();
    let addr = port.addr();
    let mut config = client_config(INTERVAL, IDLE);
    config.reconnect = backoff(initial, 2.0, max);
    let client = Client::builder()
        .config(config)
        .connect_lazy(addr)
        .expect("a lazy client starts");
    let mut states = client.watch_state();
    assert_eq!(*states.borrow_and_update(), ConnectionState::Connecting);
    let echo = EchoClient::new(client.clone());

    // Attempts fail, each followed by the next delay of the schedule: 50, 100, 200, 200 ms.
    let mut seen = Vec::new();
    let mut waiting = None;
    while seen.last().is_none_or(|&(failures, _)| failures < 4) {
        let state = next_state(&mut states, "the next attempt fails").await;
        let ConnectionState::Reconnecting {
            failures,
            retry_in,
            reason,
        } = state
        else {
            panic!("nothing listens on {addr}, yet the client is {state}");
        };
        assert!(reason.contains("connect"), "{reason}");
        assert_eq!(
            retry_in,
            nth_delay(initial, 2.0, max, failures),
            "the delay after {failures} failures"
        );
        assert!(
            seen.last().is_none_or(|&(before, _)| failures > before),
            "{seen:?}, then {failures}"
        );
        seen.push((failures, retry_in));

        if failures == 1 {
            // No connection: a call fails at once, and says it was never sent.
            let asked = Instant::now();
            let error = bounded("a call while reconnecting", echo.add(1, 2))
                .await
                .expect_err("no connection is ready");
            assert!(error.is_unavailable() && error.is_never_sent(), "{error:?}");
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "failing took {:?}",
                asked.elapsed()
            );
            // Unless it asks to wait for a connection.
            let patient = echo.with_options(patient().with_wait_for_ready(true));
            waiting = Some(tokio::spawn(async move { patient.add(2, 3).await }));
        }
    }
    eprintln!("lazy client: (failures, retry_in) seen: {seen:?}");
    assert_eq!(seen.first().map(|&(failures, _)| failures), Some(1));
    let waiting = waiting.expect("the waiting call started");
    assert!(!waiting.is_finished(), "the waiting call waits");

    let (server, _state) = start_server_on(port.listen(), server_config(INTERVAL, IDLE)).await;
    let started = Instant::now();
    let ready = bounded(
        "the client connects to the new server",
        states.wait_for(ConnectionState::is_ready),
    )
    .await
    .is_ok();
    assert!(ready, "the supervisor stopped");
    eprintln!(
        "lazy client: ready {:?} after the server started",
        started.elapsed()
    );
    let sum = bounded("the call that waited", waiting)
        .await
        .expect("the waiting task");
    assert_eq!(sum.expect("the call that waited for readiness"), 5);
    assert_eq!(
        bounded("a call when ready", echo.add(20, 22))
            .await
            .expect("add"),
        42
    );
    assert_eq!(server.connections(), 1);

    // The last handle goes: the supervisor publishes Closed and stops, and the connection
    // closes.
    let mut closing = client.watch_state();
    drop(echo);
    drop(client);
    let closed = bounded(
        "the supervisor stops",
        closing.wait_for(|state| *state == ConnectionState::Closed),
    )
    .await
    .is_ok();
    assert!(closed, "the supervisor ended without publishing Closed");
    poll_until("the server sees the close", WAIT, || {
        server.connections() == 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn with_a_paused_clock_a_silent_server_gets_pings_then_is_declared_dead() {
    const SECOND: Duration = Duration::from_secs(1);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound listener's address");
    let mut config = client_config(SECOND, 3 * SECOND);
    // Auto-advance jumps to the next timer whenever the runtime waits; the connect must not
    // be that timer.
    config.connect_timeout = Duration::from_secs(3600);
    let started = Instant::now();
    let (client, accepted) = tokio::join!(
        Client::builder().config(config).connect(addr),
        listener.accept()
    );
    let client = client.expect("the client connects");
    let (stream, _) = accepted.expect("the listener accepts");
    let mut raw = RawConnection::from_stream(stream);
    let mut states = client.watch_state();
    assert!(states.borrow_and_update().is_ready());

    // The raw side accepts and never writes: the client pings after each silent second and gives
    // up after three.
    let (frames, (dead_after, state)) = tokio::join!(
        raw.frames_until_closed("the client closes the silent connection"),
        async {
            let state = next_state(&mut states, "the client leaves Ready").await;
            (started.elapsed(), state)
        }
    );
    let kinds: Vec<_> = frames.iter().map(|frame| frame.header.kind).collect();
    eprintln!("paused clock: {kinds:?}, then {state} after {dead_after:?}");
    assert_eq!(kinds, [FrameKind::Ping, FrameKind::Ping]);
    // Heartbeat ticks fall on a process-wide grid of eighths of an interval, so the first comes
    // up to one slot after a full interval.
    assert!(
        dead_after >= 3 * SECOND && dead_after < 3 * SECOND + SECOND / 8,
        "declared dead at the idle timeout, on the tick grid: {dead_after:?}"
    );
    assert!(
        matches!(
            state,
            ConnectionState::Reconnecting { failures: 0, retry_in, .. } if retry_in.is_zero()
        ),
        "a connection that had been up reconnects at once: {state}"
    );
}

// -------------------------------------------------------------------------------------------------
// GoAway.
// -------------------------------------------------------------------------------------------------

/// Records the `state` field of every `tracing` event on the thread that installed it: the
/// client's connection states, each one, where a `watch` receiver sees only the latest.
#[derive(Debug, Clone, Default)]
struct StateEvents {
    states: Arc<Mutex<Vec<String>>>,
}

impl StateEvents {
    /// Starts recording; stops when the guard is dropped. Only for `current_thread` runtimes,
    /// whose tasks all run on the installing thread.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let events = Self::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        (events, tracing::subscriber::set_default(subscriber))
    }

    fn states(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl<S: tracing::Subscriber> Layer<S> for StateEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct StateField(Option<String>);
        impl tracing::field::Visit for StateField {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "state" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut field = StateField(None);
        event.record(&mut field);
        if let Some(state) = field.0 {
            self.states
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(state);
        }
    }
}

#[tokio::test]
async fn a_go_away_moves_an_idle_client_to_reconnecting() {
    let (events, _recording) = StateEvents::install();
    let (server, _state) = start_server(server_config(INTERVAL, IDLE)).await;
    let client = connect(server.local_addr(), client_config(INTERVAL, IDLE)).await;
    let echo = EchoClient::new(client.clone());
    assert_serves(&echo, "before the shutdown").await;
    // A call longer than a heartbeat interval: the connection has then been up long enough to
    // count as stable, and its loss is followed by an immediate attempt rather than a delay.
    let slept = bounded("a call that outlasts an interval", echo.sleep(300)).await;
    assert_eq!(slept.expect("sleep"), 300);
    let mut states = client.watch_state();
    assert!(states.borrow_and_update().is_ready());

    bounded("the shutdown", server.shutdown()).await;
    let state = next_state(&mut states, "the client leaves Ready").await;
    assert!(
        matches!(state, ConnectionState::Reconnecting { .. }),
        "{state}"
    );
    // The server is gone: attempts fail and back off.
    let failing = bounded(
        "a reconnect attempt fails",
        states
            .wait_for(|state| matches!(state, ConnectionState::Reconnecting { failures: 1.., .. })),
    )
    .await
    .expect("the supervisor runs")
    .clone();
    let error = bounded("a call after the GoAway", echo.add(1, 2))
        .await
        .expect_err("no server");
    assert!(error.is_unavailable() && error.is_never_sent(), "{error:?}");

    let logged = events.states();
    eprintln!("GoAway: states logged: {logged:#?}");
    // The watch keeps only the latest state; the events show each one. The first after Ready
    // says why the connection ended, and that the next attempt comes at once.
    let first = logged.first().expect("state changes are tracing events");
    // ("reconnecting (…)" is the form with no failure yet; the reason may go on to say that the
    // server then closed the connection.)
    assert!(
        first.starts_with("reconnecting (server sent GoAway: server shutting down"),
        "the first state after Ready: {first}"
    );
    assert!(
        logged.iter().any(|state| *state == failing.to_string()),
        "{failing} was logged too"
    );
    assert!(
        !logged.iter().any(|state| state == "ready"),
        "nothing to reconnect to, yet: {logged:?}"
    );
}

// -------------------------------------------------------------------------------------------------
// Frozen peers: alive at the TCP level, reading nothing.
// -------------------------------------------------------------------------------------------------

/// How many `echo` requests of 1 MiB a [`frozen_client`] sends.
const FROZEN_REQUESTS: u64 = 8;
/// How many of them the server must have read before the test goes on. Their replies are more
/// than the socket buffers between the two hold on loopback here (a few MiB), so the server's
/// writer is stuck for good; and fewer than the server reads before its write queue is full
/// (4 MiB queued) and it stops reading.
const FROZEN_READ: usize = 5;
/// The room a test with a frozen client leaves beyond the bound it checks: the server decodes
/// and encodes megabytes of JSON on the test's thread meanwhile. A server that waits for the
/// frozen client waits forever, far beyond this.
const FROZEN_MARGIN: Duration = Duration::from_secs(3);

/// A client that sends `echo` requests with 1 MiB of text each, each followed by a oneway
/// `notify` with its id (so the test sees how far the server has read), and never reads a byte
/// back: a process stopped, or wedged, with its socket open. Its replies fill the socket
/// buffers and the server's write queue, and leave the server's writer in the middle of a write
/// that cannot finish. Returns once the server has read [`FROZEN_READ`] of the requests, with
/// the read half, to be kept open, and the task that writes the rest and then holds the write
/// half open; abort it to let the connection go.
async fn frozen_client(
    addr: SocketAddr,
    state: &State,
) -> (tokio::net::tcp::OwnedReadHalf, JoinHandle<()>) {
    use tether::{Serialization, protocol::Flags};
    use tokio::io::AsyncWriteExt;
    let stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .expect("connecting");
    let (read, mut write) = stream.into_split();
    let text = "x".repeat(1024 * 1024);
    let writer = tokio::spawn(async move {
        for id in 1..=FROZEN_REQUESTS {
            let args = serde_json::json!([id, text]);
            let mut requests =
                support::request_bytes(2 * id, "echo", Serialization::Json, Flags::NONE, &args);
            requests.extend_from_slice(&support::request_bytes(
                2 * id + 1,
                "notify",
                Serialization::Json,
                Flags::ONEWAY,
                &support::NotifyArgs { value: id },
            ));
            if write.write_all(&requests).await.is_err() {
                return;
            }
        }
        // Frozen, not gone: dropping the write half would send a FIN.
        std::future::pending::<()>().await;
        drop(write);
    });
    state
        .wait_until("the server reads the frozen client's requests", |seen| {
            seen.notified.len() >= FROZEN_READ
        })
        .await;
    (read, writer)
}

#[tokio::test]
async fn the_server_frees_a_frozen_client_that_leaves_its_replies_unread() {
    let (server, state) = start_server(server_config(INTERVAL, IDLE)).await;
    let (_unread, writer) = frozen_client(server.local_addr(), &state).await;
    let read = Instant::now();
    // Nothing more arrives that the server reads: silence, Pings, and after the idle timeout the
    // connection is dead. Freeing it must not wait for the replies to be written: they never
    // will be.
    let freed = tokio::time::timeout(WAIT, async {
        while server.connections() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    writer.abort();
    eprintln!(
        "frozen client: {} requests read; connection freed: {} after {:?}",
        state.seen().notified.len(),
        freed.is_ok(),
        read.elapsed()
    );
    assert!(
        freed.is_ok(),
        "after {WAIT:?} the server still holds the frozen client's connection"
    );
    assert!(
        read.elapsed() < IDLE + INTERVAL + FROZEN_MARGIN,
        "freed after {:?}",
        read.elapsed()
    );
}

#[tokio::test]
async fn a_shutdown_ends_within_its_grace_period_despite_a_frozen_client() {
    let grace = Duration::from_millis(500);
    let mut config = ServerConfig::default();
    config.shutdown_grace_period = grace;
    let (server, state) = start_server(config).await;
    let (_unread, writer) = frozen_client(server.local_addr(), &state).await;
    let started = Instant::now();
    let bound = grace + FROZEN_MARGIN;
    let shutdown = tokio::time::timeout(WAIT, server.shutdown()).await;
    let took = started.elapsed();
    writer.abort();
    eprintln!(
        "frozen client: shutdown with a grace period of {grace:?} ended: {} after {took:?}",
        shutdown.is_ok()
    );
    assert!(
        shutdown.is_ok() && took < bound,
        "the shutdown was still waiting for a peer that does not read {took:?} after it began, \
         with a grace period of {grace:?}"
    );
}
