//! Calls through a real server and client: many at once over one connection, every enabled
//! format, user errors, oneway calls, calls that are dropped or time out, the server's in-flight
//! bounds, and the deadline travelling to the server.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tether::{
    CallOptions, Client, Serialization, ServerConfig,
    protocol::{Flags, FrameKind, Status},
};

use support::{
    AddArgs, EchoClient, MathError, NotifyArgs, RawConnection, bounded, connect, echo_client,
    poll_until, request_bytes, start_default_server, start_server,
};

const TASKS: u64 = 100;
const CALLS_PER_TASK: u64 = 100;

fn text_for(id: u64) -> String {
    format!(
        "request {id} says {}",
        id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_over_one_connection() {
    let mut config = ServerConfig::default();
    config.max_in_flight_per_connection = 2 * (TASKS * CALLS_PER_TASK) as usize;
    let (server, _state) = start_server(config).await;
    // A generous call timeout: this test is about matching replies, not speed, and a loaded CI
    // machine running a debug build must not turn it into a timeout test.
    let client = bounded(
        "connecting",
        Client::builder()
            .timeout(Duration::from_secs(60))
            .connect(server.local_addr()),
    )
    .await
    .expect("the client connects");
    let echo = EchoClient::new(client.clone());
    // Every task waits here until all are ready, so all the calls go out together.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS as usize));

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let echo = echo.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let ids = task * CALLS_PER_TASK..(task + 1) * CALLS_PER_TASK;
                let calls = ids.clone().map(|id| echo.echo(id, text_for(id)));
                let replies = join_all(calls).await;
                ids.zip(replies)
                    .map(|(id, reply)| (id, reply.map_err(|e| e.to_string())))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(120), join_all(tasks))
        .await
        .expect("10,000 calls finish within two minutes");

    let mut answered = 0;
    for task in results {
        for (id, reply) in task.expect("a calling task panicked") {
            let (echoed_id, echoed_text) =
                reply.unwrap_or_else(|e| panic!("call {id} failed: {e}"));
            assert_eq!(echoed_id, id, "reply to call {id} carries another id");
            assert_eq!(echoed_text, text_for(id), "reply to call {id}");
            answered += 1;
        }
    }
    assert_eq!(answered, TASKS * CALLS_PER_TASK);
    assert_eq!(client.in_flight(), 0, "every answered call left the map");
    assert_eq!(server.connections(), 1, "all calls shared one connection");
    poll_until("the server finishes", support::WAIT, || {
        server.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn user_errors_are_values_not_call_failures() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;

    let divided = bounded("div(1, 0)", echo.div(1, 0)).await;
    assert_eq!(
        divided.expect("the call itself succeeds"),
        Err(MathError::DivideByZero)
    );
    let divided = bounded("div(MIN, -1)", echo.div(i64::MIN, -1)).await;
    assert_eq!(divided.expect("call"), Err(MathError::Overflow));
    let divided = bounded("div(7, 2)", echo.div(7, 2)).await;
    assert_eq!(divided.expect("call"), Ok(3));
}

/// Zero, one and several arguments; unit, scalar, tuple and `Result` replies.
async fn check_basic_calls(echo: &EchoClient, format: Serialization) {
    let what = |call: &str| format!("{call} in {format}");
    bounded(&what("ping"), echo.ping())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", what("ping")));
    assert_eq!(
        bounded(&what("add"), echo.add(-5, 47)).await.expect("add"),
        42
    );
    assert_eq!(
        bounded(&what("add"), echo.add(i64::MAX - 1, 1))
            .await
            .expect("add"),
        i64::MAX
    );
    let text = format!("héllo, {format} ✓ {}", "x".repeat(1000));
    assert_eq!(
        bounded(&what("echo"), echo.echo(u64::MAX, text.clone()))
            .await
            .expect("echo"),
        (u64::MAX, text)
    );
    assert_eq!(
        bounded(&what("echo"), echo.echo(0, String::new()))
            .await
            .expect("echo"),
        (0, String::new())
    );
    assert_eq!(
        bounded(&what("div"), echo.div(9, 3)).await.expect("div"),
        Ok(3)
    );
    assert_eq!(
        bounded(&what("div"), echo.div(9, 0)).await.expect("div"),
        Err(MathError::DivideByZero)
    );
    assert_eq!(
        bounded(&what("sleep"), echo.sleep(1)).await.expect("sleep"),
        1
    );
}

#[tokio::test]
async fn basic_calls_in_every_enabled_format() {
    let (server, _state) = start_default_server().await;
    let formats: Vec<_> = Serialization::enabled().collect();
    assert!(formats.contains(&Serialization::Json), "JSON is always on");
    for format in formats {
        let client = bounded(
            "connecting",
            Client::builder()
                .serialization(format)
                .connect(server.local_addr()),
        )
        .await
        .unwrap_or_else(|e| panic!("connecting with {format}: {e}"));
        assert_eq!(client.config().serialization, format);
        check_basic_calls(&EchoClient::new(client), format).await;
    }
}

#[tokio::test]
async fn the_server_answers_in_the_format_of_the_request() {
    let (server, _state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    for (id, format) in (1..).zip(Serialization::enabled()) {
        let args = AddArgs {
            a: id as i64,
            b: 100,
        };
        raw.send(&request_bytes(id, "add", format, Flags::NONE, &args))
            .await;
        let reply = raw.next_frame(&format!("reply to add in {format}")).await;
        assert_eq!(reply.header.kind, FrameKind::Response);
        assert_eq!(reply.header.request_id, id);
        assert_eq!(
            reply.header.status,
            Status::Ok,
            "{format}: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header.serialization, format, "reply format");
        let sum: i64 = format.deserialize(&reply.body).expect("the reply decodes");
        assert_eq!(sum, id as i64 + 100, "{format}");
    }
}

#[tokio::test]
async fn a_oneway_request_gets_no_response_frame() {
    let (server, state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;

    let oneway = request_bytes(
        7,
        "notify",
        Serialization::Json,
        Flags::ONEWAY,
        &NotifyArgs { value: 4242 },
    );
    let mut both = oneway.to_vec();
    both.extend_from_slice(&support::ping_bytes(99));
    raw.send(&both).await;

    let first = raw.next_frame("the first frame back").await;
    assert_eq!(
        (first.header.kind, first.header.request_id),
        (FrameKind::Pong, 99),
        "the first frame back must be the Pong, not a response to the oneway request: {first:?}"
    );
    state
        .wait_until("the oneway value arrives", |seen| seen.notified == [4242])
        .await;
    // The handler has returned and released its place once the server's count is back to 0; a
    // response, had it sent one, would be queued ahead of the Pong to this later Ping.
    poll_until("the oneway call ends", support::WAIT, || {
        server.in_flight() == 0
    })
    .await;
    raw.assert_pong(100, "after the oneway call ended").await;
}

#[tokio::test]
async fn oneway_calls_through_the_typed_client() {
    let (server, state) = start_default_server().await;
    let echo = echo_client(&server).await;
    for value in 1..=20 {
        bounded("queueing a oneway call", echo.notify(value))
            .await
            .expect("a oneway call is queued");
    }
    assert_eq!(
        echo.client().in_flight(),
        0,
        "oneway calls wait for nothing"
    );
    let seen = state
        .wait_until("all 20 oneway values arrive", |seen| {
            seen.notified.len() >= 20
        })
        .await;
    let mut values = seen.notified;
    values.sort_unstable();
    assert_eq!(values, (1..=20).collect::<Vec<_>>());
    // A normal call on the same connection still gets its own reply.
    assert_eq!(bounded("add", echo.add(1, 2)).await.expect("add"), 3);
}

#[tokio::test]
async fn calls_dropped_by_a_timeout_leave_nothing_behind() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let calls = (0..50).map(|_| tokio::time::timeout(Duration::from_millis(50), echo.sleep(500)));
    let outcomes = bounded("50 cut-short calls", join_all(calls)).await;
    assert!(
        outcomes.iter().all(Result::is_err),
        "every call was cut short by its 50 ms timeout: {outcomes:?}"
    );
    assert_eq!(echo.client().in_flight(), 0, "dropped calls left entries");
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
}

#[tokio::test]
async fn calls_aborted_mid_flight_leave_nothing_behind() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let echo = echo.clone();
            tokio::spawn(async move { echo.sleep(2000).await })
        })
        .collect();
    poll_until("50 calls in flight", support::WAIT, || {
        echo.client().in_flight() == 50
    })
    .await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let ended = bounded("an aborted task ends", task).await;
        assert!(ended.as_ref().is_err_and(|e| e.is_cancelled()), "{ended:?}");
    }
    assert_eq!(echo.client().in_flight(), 0, "aborted calls left entries");
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
}

#[tokio::test]
async fn calls_dropped_in_a_select_leave_nothing_behind() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    for _ in 0..10 {
        tokio::select! {
            reply = echo.sleep(2000) => panic!("sleep(2000) answered first: {reply:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    assert_eq!(echo.client().in_flight(), 0);
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
}

#[tokio::test]
async fn a_call_that_times_out_says_so_and_leaves_nothing_behind() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let impatient =
        echo.with_options(CallOptions::default().with_timeout(Duration::from_millis(50)));
    let started = Instant::now();
    let error = bounded("sleep(2000) with a 50 ms timeout", impatient.sleep(2000))
        .await
        .expect_err("the call times out");
    assert!(error.is_timeout(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the timeout fired late: {:?}",
        started.elapsed()
    );
    assert_eq!(echo.client().in_flight(), 0);
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
    // The options apply to the handle that has them only.
    assert_eq!(
        bounded("sleep(100)", echo.sleep(100)).await.expect("sleep"),
        100
    );
}

#[tokio::test]
async fn the_bound_per_connection_refuses_the_call_too_many() {
    let mut config = ServerConfig::default();
    config.max_in_flight_per_connection = 2;
    let (server, _state) = start_server(config).await;
    let echo = echo_client(&server).await;
    let outcomes = bounded(
        "three sleeps",
        join_all([echo.sleep(300), echo.sleep(300), echo.sleep(300)]),
    )
    .await;
    let refused = outcomes
        .iter()
        .filter(|outcome| outcome.as_ref().is_err_and(|e| e.is_overloaded()))
        .count();
    let answered = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(300)))
        .count();
    assert_eq!((refused, answered), (1, 2), "{outcomes:?}");
    let error = outcomes
        .into_iter()
        .find_map(Result::err)
        .expect("one error");
    assert_eq!(error.status(), Some(Status::Overloaded));
    assert!(error.is_never_sent(), "an overloaded call never ran");
    // The places are given back.
    assert_eq!(bounded("add", echo.add(1, 1)).await.expect("add"), 2);
}

#[tokio::test]
async fn the_bound_per_server_refuses_the_call_too_many() {
    let mut config = ServerConfig::default();
    config.max_in_flight = 2;
    let (server, _state) = start_server(config).await;
    // Three connections with one call each: only the server-wide bound can refuse one.
    let clients = [
        echo_client(&server).await,
        echo_client(&server).await,
        echo_client(&server).await,
    ];
    let outcomes = bounded(
        "three sleeps on three connections",
        join_all(clients.iter().map(|echo| echo.sleep(300))),
    )
    .await;
    let refused = outcomes
        .iter()
        .filter(|outcome| outcome.as_ref().is_err_and(|e| e.is_overloaded()))
        .count();
    let answered = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(300)))
        .count();
    assert_eq!((refused, answered), (1, 2), "{outcomes:?}");
    for echo in &clients {
        assert_eq!(bounded("add", echo.add(1, 1)).await.expect("add"), 2);
    }
}

#[tokio::test]
async fn the_deadline_travels_and_the_server_drops_the_work() {
    let (server, state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let impatient =
        echo.with_options(CallOptions::default().with_timeout(Duration::from_millis(100)));
    let started = Instant::now();
    let error = bounded("sleep(1000) with a 100 ms timeout", impatient.sleep(1000))
        .await
        .expect_err("the call times out");
    assert!(error.is_timeout(), "{error:?}");

    // Well before the sleep would end, the server has dropped it.
    poll_until(
        "the server drops the work",
        Duration::from_millis(800).saturating_sub(started.elapsed()),
        || server.in_flight() == 0,
    )
    .await;
    let seen = state.seen();
    assert_eq!(
        (
            seen.sleeps_started,
            seen.sleeps_dropped,
            seen.sleeps_finished
        ),
        (1, 1, 0),
        "the handler's future was dropped, not run to its end"
    );
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
}

#[tokio::test]
async fn a_connection_per_client_and_clones_share_it() {
    let (server, _state) = start_default_server().await;
    let client = connect(&server).await;
    let first = EchoClient::new(client.clone());
    let second = EchoClient::new(client.clone());
    let (a, b) = tokio::join!(first.add(1, 2), second.add(3, 4));
    assert_eq!((a.expect("add"), b.expect("add")), (3, 7));
    assert_eq!(server.connections(), 1);
    assert_eq!(client.peer(), Some(server.local_addr()));
}

#[tokio::test]
async fn a_timeout_too_long_to_matter_still_calls() {
    let (server, _state) = start_default_server().await;
    let client = bounded(
        "connecting",
        Client::builder()
            .timeout(Duration::MAX)
            .connect(server.local_addr()),
    )
    .await
    .expect("the client connects");
    let echo = EchoClient::new(client);
    let sum = tokio::spawn(async move { echo.add(1, 2).await });
    let sum = bounded("add with Duration::MAX as its timeout", sum).await;
    assert_eq!(
        sum.expect("a call with an unbounded timeout must not panic")
            .expect("add"),
        3
    );
}

#[tokio::test]
async fn per_call_options_with_a_timeout_too_long_to_matter_still_call() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server)
        .await
        .with_options(CallOptions::default().with_timeout(Duration::MAX));
    let sum = tokio::spawn(async move { echo.add(1, 2).await });
    let sum = bounded("add with Duration::MAX in its options", sum).await;
    assert_eq!(
        sum.expect("a call with an unbounded timeout must not panic")
            .expect("add"),
        3
    );
}

#[tokio::test]
async fn a_request_with_the_largest_timeout_the_wire_holds_is_served() {
    let (server, _state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    let mut metadata = support::metadata_for("add");
    metadata.timeout = Some(Duration::from_micros(u64::MAX));
    let mut encoded = bytes::BytesMut::new();
    metadata.encode(&mut encoded).expect("metadata fits");
    let mut header = tether::protocol::Header::new(FrameKind::Request, 1);
    header.serialization = Serialization::Json;
    raw.send(&support::frame_bytes(&header, &encoded, b"[40, 2]"))
        .await;
    let reply = raw.next_frame("the reply").await;
    assert_eq!(
        (reply.header.request_id, reply.header.status),
        (1, Status::Ok),
        "{reply:?}"
    );
    assert_eq!(&reply.body[..], b"42");
}

#[tokio::test]
async fn a_request_too_large_for_a_frame_is_refused_before_it_is_sent() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let huge = "x".repeat(tether::protocol::DEFAULT_MAX_FRAME_LENGTH + 1);
    let error = bounded("a 16 MiB echo", echo.echo(1, huge))
        .await
        .expect_err("too large");
    assert_eq!(error.kind(), tether::ErrorKind::InvalidRequest, "{error:?}");
    assert!(error.is_never_sent());
    assert_eq!(echo.client().in_flight(), 0);
    assert!(!echo.client().is_closed());
    assert_eq!(bounded("add", echo.add(2, 3)).await.expect("add"), 5);
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let error = bounded("connecting to a closed port", Client::connect(addr))
        .await
        .expect_err("nothing listens there");
    assert!(error.is_unavailable(), "{error:?}");
}
