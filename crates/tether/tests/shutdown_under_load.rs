//! A graceful shutdown in the middle of steady load: every call the server accepted before its
//! GoAway gets its real reply, and every other call fails as never sent.

mod support;

use std::time::Duration;

use tether::{Client, ClientConfig, ConnectionState, Error, ServerConfig};
use tokio::sync::watch;

use support::{EchoClient, bounded, start_server};

/// Tasks calling at once through the one client.
const WORKERS: u64 = 8;
/// How long each `sleep` call runs on the server.
const SLEEP_MS: u64 = 20;

/// What one worker's calls came to.
#[derive(Debug, Default)]
struct Outcomes {
    /// `sleep` calls answered with the right value.
    sleeps: usize,
    /// `echo` calls answered with the right value.
    echoes: usize,
    /// Calls that failed as unavailable: never sent, or sent and not run.
    unavailable: usize,
    /// Anything else: a wrong value, or another error.
    wrong: Vec<String>,
}

impl Outcomes {
    fn add(&mut self, other: Self) {
        self.sleeps += other.sleeps;
        self.echoes += other.echoes;
        self.unavailable += other.unavailable;
        self.wrong.extend(other.wrong);
    }
}

/// Calls `sleep` and `echo` in turn until `stop`, checking every reply. After a call fails as
/// unavailable it waits for the client's next state change rather than spin on a client with
/// no connection.
async fn work(echo: EchoClient, worker: u64, mut stop: watch::Receiver<bool>) -> Outcomes {
    let mut states = echo.client().watch_state();
    let mut outcomes = Outcomes::default();
    for call in 0u64.. {
        if *stop.borrow() {
            break;
        }
        states.borrow_and_update();
        let result: Result<(), Error> = if call % 2 == 0 {
            echo.sleep(SLEEP_MS).await.map(|slept| {
                if slept == SLEEP_MS {
                    outcomes.sleeps += 1;
                } else {
                    outcomes.wrong.push(format!("sleep({SLEEP_MS}) = {slept}"));
                }
            })
        } else {
            let id = (worker << 32) | call;
            let text = format!("worker {worker} call {call}");
            echo.echo(id, text.clone()).await.map(|reply| {
                if reply == (id, text.clone()) {
                    outcomes.echoes += 1;
                } else {
                    outcomes
                        .wrong
                        .push(format!("echo({id}, {text:?}) = {reply:?}"));
                }
            })
        };
        match result {
            Ok(()) => {}
            Err(error) if error.is_unavailable() => {
                outcomes.unavailable += 1;
                tokio::select! {
                    _ = states.changed() => {}
                    _ = stop.changed() => {}
                }
            }
            Err(error) => outcomes.wrong.push(format!("call {call}: {error:?}")),
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_shutdown_under_load_answers_every_call_it_accepted() {
    let mut config = ServerConfig::default();
    config.shutdown_grace_period = Duration::from_secs(5);
    let (server, state) = start_server(config).await;
    let mut config = ClientConfig::default();
    config.reconnect.initial = Duration::from_millis(20);
    config.reconnect.max = Duration::from_millis(100);
    let client = bounded(
        "connecting",
        Client::builder()
            .config(config)
            .connect(server.local_addr()),
    )
    .await
    .expect("the client connects");
    let echo = EchoClient::new(client.clone());
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| tokio::spawn(work(echo.clone(), worker, stopped.clone())))
        .collect();

    // Steady load: several rounds done, and `sleep` calls running right now (the state wakes
    // the test as each one starts), with most of their time still ahead.
    let before = state
        .wait_until("the load runs", |seen| {
            seen.sleeps_finished >= 4 * WORKERS as usize
                && seen.sleeps_started >= seen.sleeps_finished + 2
        })
        .await;
    let in_flight = server.in_flight();
    bounded("the shutdown", server.shutdown()).await;
    let at_close = state.seen();

    // The load goes on against a client with no server: calls fail as unavailable while it
    // tries to reconnect and fails.
    let mut states = client.watch_state();
    bounded(
        "reconnect attempts fail",
        states
            .wait_for(|state| matches!(state, ConnectionState::Reconnecting { failures: 3.., .. })),
    )
    .await
    .expect("the supervisor runs");
    stop.send_replace(true);
    let mut outcomes = Outcomes::default();
    for worker in workers {
        outcomes.add(bounded("a worker stops", worker).await.expect("the worker"));
    }
    let seen = state.seen();
    eprintln!(
        "shutdown under load: {in_flight} calls running at the shutdown; sleeps started / \
         finished on the server: {} / {} before it, {} / {} at the close; the client got {} \
         sleeps and {} echoes right, {} calls unavailable",
        before.sleeps_started,
        before.sleeps_finished,
        at_close.sleeps_started,
        at_close.sleeps_finished,
        outcomes.sleeps,
        outcomes.echoes,
        outcomes.unavailable
    );

    assert!(outcomes.wrong.is_empty(), "{:#?}", outcomes.wrong);
    // Calls were running when the shutdown began, and the server let them finish.
    assert!(in_flight > 0);
    assert!(at_close.sleeps_finished > before.sleeps_finished);
    assert_eq!(seen.sleeps_dropped, 0, "the server cut calls short");
    assert_eq!(seen.sleeps_started, seen.sleeps_finished);
    // Every call the server ran, its caller got the reply of.
    assert_eq!(
        outcomes.sleeps, seen.sleeps_finished,
        "sleeps answered to the client / run on the server"
    );
    assert!(outcomes.unavailable > 0, "calls after the shutdown");
}
