//! The `provider` example as a real process: killed with SIGKILL, its client retries on the
//! backoff schedule; started again on the same port, the client finds it by itself.
//!
//! `cargo test -p tether-examples` builds the examples before it runs this test; the program is
//! found next to the test's own executable.

mod support;

use std::time::Duration;

use support::ProviderProcess;
use tether::{Backoff, Client, ClientConfig, ConnectionState};
use tether_examples::CalculatorClient;
use tokio::{
    sync::watch,
    time::{Instant, timeout},
};

/// How long any single wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(20);
/// The heartbeat interval of both sides.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// The provider's idle timeout.
const IDLE: Duration = Duration::from_millis(600);
/// The client's reconnect schedule: 50 ms, doubling, at most 400 ms, no jitter.
const INITIAL: Duration = Duration::from_millis(50);
const MULTIPLIER: f64 = 2.0;
const MAX: Duration = Duration::from_millis(400);
/// Failed attempts watched before the provider comes back: the schedule reaches its cap and
/// stays there.
const ATTEMPTS: u32 = 6;

/// `future`'s output, or a panic naming `what` if it takes longer than [`WAIT`].
async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// The provider's flags besides `--addr`.
fn provider_args() -> Vec<String> {
    vec![
        "--heartbeat-ms".to_owned(),
        HEARTBEAT.as_millis().to_string(),
        "--idle-timeout-ms".to_owned(),
        IDLE.as_millis().to_string(),
    ]
}

/// The `n`th delay (from 1) of the reconnect schedule.
fn nth_delay(n: u32) -> Duration {
    let exponent = i32::try_from(n - 1).expect("a small attempt number");
    INITIAL.mul_f64(MULTIPLIER.powi(exponent)).min(MAX)
}

/// Waits for the next state published on `states` and returns it.
async fn next_state(states: &mut watch::Receiver<ConnectionState>, what: &str) -> ConnectionState {
    bounded(what, states.changed())
        .await
        .expect("the client's supervisor runs");
    states.borrow_and_update().clone()
}

#[tokio::test]
async fn a_killed_provider_is_retried_on_schedule_and_found_again_when_restarted() {
    let mut provider = ProviderProcess::start(&provider_args()).await;
    let addr = provider.addr();

    let mut config = ClientConfig::default();
    config.heartbeat_interval = HEARTBEAT;
    let mut reconnect = Backoff::default();
    reconnect.initial = INITIAL;
    reconnect.multiplier = MULTIPLIER;
    reconnect.max = MAX;
    reconnect.jitter = 0.0;
    config.reconnect = reconnect;
    let client = bounded(
        "connecting to the provider",
        Client::builder().config(config).connect(addr),
    )
    .await
    .expect("the client connects");
    let calculator = CalculatorClient::new(client.clone());
    let sum = bounded("add", calculator.add(2, 3)).await;
    assert_eq!(sum.expect("add"), 5);
    let mut states = client.watch_state();
    assert!(states.borrow_and_update().is_ready());

    provider.kill().await;
    let killed = Instant::now();
    // The loss, then one failed attempt after another, each followed by the schedule's delay.
    let mut seen = Vec::new();
    while seen.last().is_none_or(|&(failures, _)| failures < ATTEMPTS) {
        let state = next_state(&mut states, "the next attempt").await;
        let ConnectionState::Reconnecting {
            failures, retry_in, ..
        } = state
        else {
            panic!("the provider is dead, yet the client is {state}");
        };
        seen.push((failures, retry_in));
    }
    let given_up_for = killed.elapsed();
    eprintln!("provider killed: (failures, retry_in) seen over {given_up_for:?}: {seen:?}");
    // Each failure's delay is the schedule's: 50, 100, 200, 400, 400, ... ms. (A watch shows
    // the latest state only; with 50 ms or more between changes the test sees each one, but a
    // state skipped by a stalled thread would not make the schedule wrong.)
    for &(failures, retry_in) in &seen {
        let expected = if failures == 0 {
            // The immediate attempt after losing a connection that had been up a while.
            Duration::ZERO
        } else {
            nth_delay(failures)
        };
        assert_eq!(retry_in, expected, "after {failures} failures, in {seen:?}");
    }
    assert!(
        seen.windows(2).all(|pair| pair[1].0 > pair[0].0),
        "failures only grow: {seen:?}"
    );
    assert!(seen.len() >= ATTEMPTS as usize - 1, "{seen:?}");

    // Back on the same port: the client finds it on its own.
    let provider = ProviderProcess::start_again(addr, &provider_args()).await;
    let restarted = Instant::now();
    let ready = bounded(
        "the client reconnects to the restarted provider",
        states.wait_for(ConnectionState::is_ready),
    )
    .await
    .is_ok();
    assert!(ready, "the client's supervisor stopped");
    let ready_after = restarted.elapsed();
    let sum = bounded("add after the restart", calculator.add(20, 22)).await;
    let served_after = restarted.elapsed();
    assert_eq!(sum.expect("add after the restart"), 42);
    eprintln!(
        "provider restarted: client ready {ready_after:?} and first call served {served_after:?} \
         after the provider said it listens"
    );
    // How soon it reconnected is reported above, not asserted: the schedule's delays, checked
    // before, bound it, and a loaded machine stretches everything else.
    drop(provider);
}
