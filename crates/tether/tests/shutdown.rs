//! How connections end: a server's graceful shutdown (GoAway, calls in flight finish, then close)
//! and a client that goes away.

mod support;

use std::time::Duration;

use tether::{
    Serialization, ServerConfig,
    protocol::{Flags, FrameKind, Header, Status},
};

use support::{
    RawConnection, bounded, echo_client, poll_until, start_default_server, start_server,
};

#[tokio::test]
async fn shutdown_sends_go_away_and_closes() {
    let (server, _state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    raw.assert_pong(1, "before the shutdown").await;
    bounded("shutdown", server.shutdown()).await;
    let go_away = raw.next_frame("the GoAway").await;
    assert_eq!(go_away.header.kind, FrameKind::GoAway, "{go_away:?}");
    assert_eq!(go_away.header.status, Status::Ok, "a graceful GoAway");
}

#[tokio::test]
async fn calls_after_a_shutdown_fail_at_once() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    assert_eq!(bounded("add", echo.add(1, 2)).await.expect("add"), 3);
    bounded("shutdown", server.shutdown()).await;
    poll_until("the client sees the close", support::WAIT, || {
        echo.client().is_closed()
    })
    .await;
    let error = bounded("add after the shutdown", echo.add(1, 2))
        .await
        .expect_err("the server is gone");
    // A call made after the close never reached a server: safe to send elsewhere.
    assert!(error.is_unavailable() && error.is_never_sent(), "{error:?}");
    assert_eq!(echo.client().in_flight(), 0);
}

#[tokio::test]
async fn a_call_in_flight_finishes_during_a_graceful_shutdown() {
    let mut config = ServerConfig::default();
    config.shutdown_grace_period = Duration::from_secs(5);
    let (server, state) = start_server(config).await;
    let echo = echo_client(&server).await;
    let call = tokio::spawn({
        let echo = echo.clone();
        async move { echo.sleep(300).await }
    });
    state
        .wait_until("the sleep starts", |seen| seen.sleeps_started == 1)
        .await;
    bounded("shutdown", server.shutdown()).await;
    let seen = state.seen();
    assert_eq!(
        (seen.sleeps_finished, seen.sleeps_dropped),
        (1, 0),
        "the server let the call finish before it closed"
    );
    let reply = bounded("the call in flight", call)
        .await
        .expect("the calling task");
    assert_eq!(
        reply.expect("a call the server finished during its grace period gets its reply"),
        300
    );
}

#[tokio::test]
async fn dropping_the_last_client_handle_closes_the_connection() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    let clone = echo.clone();
    assert_eq!(bounded("add", echo.add(1, 2)).await.expect("add"), 3);
    poll_until("the server counts the connection", support::WAIT, || {
        server.connections() == 1
    })
    .await;
    drop(echo);
    assert_eq!(
        bounded("add on a clone", clone.add(1, 2))
            .await
            .expect("add"),
        3,
        "a clone keeps the connection open"
    );
    drop(clone);
    poll_until("the server sees the close", support::WAIT, || {
        server.connections() == 0
    })
    .await;
}

#[tokio::test]
async fn dropping_the_server_closes_its_connections() {
    let (server, _state) = start_default_server().await;
    let echo = echo_client(&server).await;
    assert_eq!(bounded("add", echo.add(1, 2)).await.expect("add"), 3);
    drop(server);
    poll_until("the client sees the close", support::WAIT, || {
        echo.client().is_closed()
    })
    .await;
    let error = bounded("add after the drop", echo.add(1, 2))
        .await
        .expect_err("the server is gone");
    // A call made after the close never reached a server: safe to send elsewhere.
    assert!(error.is_unavailable() && error.is_never_sent(), "{error:?}");
}

#[tokio::test]
async fn a_client_going_away_gets_the_replies_in_flight_then_a_close() {
    let (server, state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    let mut both = support::request_bytes(
        5,
        "sleep",
        Serialization::Json,
        Flags::NONE,
        &serde_json::json!([200]),
    )
    .to_vec();
    both.extend_from_slice(&support::frame_bytes(
        &Header::new(FrameKind::GoAway, 5),
        &[],
        b"client done",
    ));
    raw.send(&both).await;
    let reply = raw.next_frame("the reply to the call in flight").await;
    assert_eq!(
        (
            reply.header.kind,
            reply.header.request_id,
            reply.header.status
        ),
        (FrameKind::Response, 5, Status::Ok),
        "{reply:?}"
    );
    assert_eq!(&reply.body[..], b"200");
    assert_eq!(state.seen().sleeps_finished, 1);
    raw.assert_closed("after the last reply").await;
    poll_until("the server forgets the connection", support::WAIT, || {
        server.connections() == 0
    })
    .await;
}
