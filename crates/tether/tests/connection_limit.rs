//! The server's bound on open connections, with each eviction strategy seen from real clients.

mod support;

use std::time::Duration;

use tether::{
    Client, ClientConfig, ConnectionState, Eviction, Server, ServerConfig, protocol::Status,
};

use support::{EchoClient, RawConnection, WAIT, assert_serves, bounded, poll_until, start_server};

fn limited(max: usize, eviction: Eviction) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.max_connections = Some(max);
    config.eviction = eviction;
    config.shutdown_grace_period = Duration::from_millis(200);
    config
}

/// A client that, once evicted, waits a minute before it tries again: long enough to stay away
/// for the rest of the test.
async fn echo_client(server: &Server) -> EchoClient {
    let mut config = ClientConfig::default();
    config.reconnect.initial = Duration::from_secs(60);
    config.reconnect.max = Duration::from_secs(60);
    let connect = Client::builder()
        .config(config)
        .connect(server.local_addr());
    EchoClient::new(bounded("connecting", connect).await.expect("connects"))
}

#[tokio::test]
async fn refuse_turns_the_newcomer_away_with_a_reason() {
    let (server, _) = start_server(limited(2, Eviction::Refuse)).await;
    let first = echo_client(&server).await;
    let second = echo_client(&server).await;
    assert_serves(&first, "first").await;
    assert_serves(&second, "second").await;

    let mut third = RawConnection::open(server.local_addr()).await;
    let go_away = third.next_frame("the refusal").await;
    assert_eq!(go_away.header.status, Status::Overloaded, "{go_away:?}");
    assert_eq!(&go_away.body[..], b"too many connections");
    third.assert_closed("the refused connection").await;

    assert_serves(&first, "first after the refusal").await;
    assert_serves(&second, "second after the refusal").await;
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn oldest_gives_way_to_the_newcomer() {
    let (server, _) = start_server(limited(2, Eviction::Oldest)).await;
    let oldest = echo_client(&server).await;
    assert_serves(&oldest, "oldest").await;
    let middle = echo_client(&server).await;
    assert_serves(&middle, "middle").await;

    let newest = echo_client(&server).await;
    assert_serves(&newest, "newest").await;
    let mut states = oldest.client().watch_state();
    let evicted = bounded(
        "the oldest is told to go",
        states.wait_for(|state| !state.is_ready()),
    )
    .await
    .expect("the client lives")
    .clone();
    let ConnectionState::Reconnecting {
        retry_in, reason, ..
    } = evicted
    else {
        panic!("{evicted:?}");
    };
    assert!(reason.contains("evicted"), "{reason}");
    assert!(
        retry_in >= Duration::from_secs(30),
        "an evicted client backs off instead of coming straight back: {retry_in:?}"
    );
    let error = oldest.add(1, 1).await.expect_err("evicted");
    assert!(error.is_unavailable(), "{error:?}");
    assert_serves(&middle, "middle after the eviction").await;
    poll_until("the server counts two connections", WAIT, || {
        server.connections() == 2
    })
    .await;
}

#[tokio::test]
async fn least_used_spares_the_busy_connection() {
    let (server, _) = start_server(limited(2, Eviction::LeastUsed)).await;
    let busy = echo_client(&server).await;
    let idle = echo_client(&server).await;
    for _ in 0..5 {
        assert_serves(&busy, "busy").await;
    }
    let newcomer = echo_client(&server).await;
    assert_serves(&newcomer, "newcomer").await;
    poll_until("the idle one is told to go", WAIT, || {
        idle.client().is_closed()
    })
    .await;
    assert!(!busy.client().is_closed());
    assert_serves(&busy, "busy after the eviction").await;
}

#[tokio::test]
async fn an_evicted_connection_finishes_its_calls_in_flight() {
    let mut config = limited(1, Eviction::Newest);
    config.shutdown_grace_period = Duration::from_secs(5);
    let (server, _) = start_server(config).await;
    let first = echo_client(&server).await;
    let slow = tokio::spawn({
        let first = first.clone();
        async move { first.sleep(300).await }
    });
    poll_until("the slow call runs", WAIT, || server.in_flight() == 1).await;
    let second = echo_client(&server).await;
    assert_serves(&second, "the newcomer").await;
    let slept = tokio::time::timeout(WAIT, slow)
        .await
        .expect("bounded")
        .expect("task");
    assert_eq!(slept.expect("the call in flight gets its reply"), 300);
}
