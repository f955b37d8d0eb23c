//! The `provider` example as real processes registered in a real ZooKeeper, called by a
//! discovering [`CalculatorClient`]: calls split by the providers' `--weight`, a provider killed
//! with SIGKILL fails no call and is dropped once its ZooKeeper session expires, and a provider
//! started mid-run answers calls.
//!
//! `cargo test -p tether-examples --features registries` builds the examples (with the ZooKeeper
//! backend) before it runs this test; the program is found next to the test's own executable.
//! ZooKeeper is started through `scripts/registry-servers.sh` on a free port of 127.0.0.1 and
//! stopped when the test ends, however it ends.

#![cfg(feature = "registries")]

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use support::ProviderProcess as Provider;
use tether::{Client, ClientConfig};
use tether_examples::CalculatorClient;
use tokio::{
    task::JoinHandle,
    time::{Instant, timeout},
};

/// How long any single wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(15);
/// The registry TTL (the ZooKeeper session timeout) of every process.
const TTL_MS: u64 = 2000;
/// The pause after each call of the background callers: calls keep coming, and the processes'
/// ZooKeeper heartbeats keep their share of a small CI machine's CPUs.
const PACE: Duration = Duration::from_millis(1);

/// `future`'s output, or a panic naming `what` if it takes longer than [`WAIT`].
async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// Waits until `condition` holds, checking every few milliseconds, at most [`WAIT`].
async fn poll_until(what: &str, mut condition: impl FnMut() -> bool) {
    bounded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// -------------------------------------------------------------------------------------------------
// ZooKeeper, through the script.
// -------------------------------------------------------------------------------------------------

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/registry-servers.sh")
}

/// Runs the script with `args` and returns its stdout, panicking with its stderr on failure. It
/// starts a JVM and takes a second or more: called in `block_in_place`, so that the runtime's
/// other tasks keep running.
fn run_script(args: &[&str]) -> String {
    try_run_script(args).unwrap_or_else(|(_, failure)| panic!("{failure}"))
}

/// The script's exit status when a port it was given turned out to be taken.
const PORT_TAKEN: i32 = 75;

/// Runs the script with `args`: its stdout, or its exit code and a message with its output.
fn try_run_script(args: &[&str]) -> Result<String, (Option<i32>, String)> {
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new("bash")
            .arg(script())
            .args(args)
            .output()
    })
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err((
        output.status.code(),
        format!(
            "registry-servers.sh {args:?} failed ({}); did `scripts/registry-servers.sh install` \
             run?\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// A ZooKeeper of this test's own, stopped when dropped.
#[derive(Debug)]
struct ZooKeeper {
    name: String,
    addr: String,
}

impl ZooKeeper {
    fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cluster-process-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // A port of the script's range, reserved for this run; if a process outside the run
        // took it anyway, the script says so and another one is tried.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = run_script(&["free-port"]).trim().to_owned();
            let started = try_run_script(&[
                "start",
                "zookeeper",
                &name,
                "--port",
                &port,
                "--max-session-ms",
                "20000",
            ]);
            match started {
                Ok(stdout) => {
                    let addr = stdout.lines().last().unwrap_or_default().trim().to_owned();
                    assert!(!addr.is_empty(), "no address printed for {name}");
                    return Self { name, addr };
                }
                Err((Some(PORT_TAKEN), failure)) => failures.push(failure),
                Err((_, failure)) => panic!("{failure}"),
            }
        }
        panic!("{name}: every port tried was taken: {failures:#?}")
    }

    /// The registry URL every process of the test uses.
    fn url(&self) -> String {
        format!("zookeeper://{}?ttl_ms={TTL_MS}", self.addr)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .args(["stop", &self.name])
            .output();
    }
}

// -------------------------------------------------------------------------------------------------
// Provider processes.
// -------------------------------------------------------------------------------------------------

/// A provider with `weight` registered at `registry`, once it says it listens (which it prints
/// once it is registered).
async fn start_provider(weight: u32, registry: &str) -> Provider {
    let args = ["--registry", registry, "--weight", &weight.to_string()].map(str::to_owned);
    Provider::start(&args).await
}

/// How a provider names itself in its answers: the address it listens on.
fn name(provider: &Provider) -> String {
    provider.addr().to_string()
}

// -------------------------------------------------------------------------------------------------
// The consumer.
// -------------------------------------------------------------------------------------------------

/// A client of the calculator following `registry`, as `examples/consumer` makes it with
/// `--balance weighted_random --warmup-ms 0`, once it lists `expected` providers.
async fn discover(registry: &str, expected: usize) -> (Client, CalculatorClient) {
    let mut config = ClientConfig::default();
    config.balance = "weighted_random".to_owned();
    config.warmup = Duration::ZERO;
    let registry = bounded(
        "connecting to ZooKeeper",
        tether::registry::connect(registry),
    )
    .await
    .expect("the consumer reaches ZooKeeper");
    let client = bounded(
        "discovering",
        Client::builder()
            .config(config)
            .discover(registry, CalculatorClient::DESCRIPTOR.key()),
    )
    .await
    .expect("the consumer subscribes");
    poll_until("the consumer lists every provider", || {
        client.providers().len() == expected
    })
    .await;
    (client.clone(), CalculatorClient::new(client))
}

/// Calls `sum` until each of `providers` has answered once: then the consumer has a ready
/// connection to each.
async fn until_each_answers(calculator: &CalculatorClient, providers: &[&Provider]) {
    let mut seen = Vec::new();
    bounded("every provider answers a call", async {
        while providers.iter().any(|p| !seen.contains(&name(p))) {
            let answer = calculator.sum(1, 2).await.expect("a warm-up call");
            seen.push(answer.provider);
        }
    })
    .await;
}

/// How many answers came from each provider, by address.
fn tally<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts
}

/// One call's outcome in the background loop.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    /// The provider that answered, or the error.
    answer: Result<String, String>,
}

/// A task calling `sum` until stopped, [`PACE`] apart, recording every outcome.
struct Calls {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Calls {
    fn start(calculator: &CalculatorClient) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let calculator = calculator.clone();
            let outcomes = outcomes.clone();
            let stop = stop.clone();
            async move {
                let mut i = 0_i64;
                while !stop.load(Ordering::Relaxed) {
                    let answer = match calculator.sum(i, i).await {
                        Ok(answer) if answer.value == 2 * i => Ok(answer.provider),
                        Ok(answer) => Err(format!("sum({i}, {i}) = {answer:?}")),
                        Err(error) => Err(format!("{:?}: {error}", error.kind())),
                    };
                    let at = Instant::now();
                    lock(&outcomes).push(Outcome { at, answer });
                    i += 1;
                    tokio::time::sleep(PACE).await;
                }
            }
        });
        Self {
            outcomes,
            stop,
            task,
        }
    }

    /// A copy of the outcomes so far.
    fn outcomes(&self) -> Vec<Outcome> {
        lock(&self.outcomes).clone()
    }

    /// Waits until `more` calls past the ones done now are done.
    async fn wait_for_more(&self, more: usize, what: &str) {
        let target = lock(&self.outcomes).len() + more;
        poll_until(what, || lock(&self.outcomes).len() >= target).await;
    }

    /// Stops the loop once its call in flight ends, and returns every outcome.
    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        bounded("stopping the calls", self.task)
            .await
            .expect("the calling task does not panic");
        lock(&self.outcomes).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The errors among `outcomes`.
fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter_map(|o| o.answer.as_ref().err().map(String::as_str))
        .collect()
}

/// Who answered the calls of `outcomes` done in `range` of time.
fn answered_in(
    outcomes: &[Outcome],
    range: impl std::ops::RangeBounds<Instant>,
) -> BTreeMap<String, usize> {
    tally(
        outcomes
            .iter()
            .filter(|o| range.contains(&o.at))
            .filter_map(|o| o.answer.as_deref().ok()),
    )
}

/// Three providers with weights 1, 2 and 3 registered in `zookeeper`, in that order.
async fn three_providers(zookeeper: &ZooKeeper) -> Vec<Provider> {
    let mut providers = Vec::new();
    for weight in [1, 2, 3] {
        providers.push(start_provider(weight, &zookeeper.url()).await);
    }
    providers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_split_calls_by_weight_and_a_killed_one_fails_no_call() {
    let zookeeper = ZooKeeper::start();
    let mut providers = three_providers(&zookeeper).await;
    let (client, calculator) = discover(&zookeeper.url(), 3).await;
    until_each_answers(&calculator, &providers.iter().collect::<Vec<_>>()).await;

    // 6,000 calls: with 3,000, 10% of the smallest expected count (500) would be only 2.4 of its
    // standard deviations, and the test would fail about once in 70 runs; with 6,000 it is 3.5.
    let mut names = Vec::with_capacity(6000);
    bounded("6,000 calls", async {
        for i in 0..6000 {
            let answer = calculator.sum(i, i).await.expect("a call");
            assert_eq!(answer.value, 2 * i);
            names.push(answer.provider);
        }
    })
    .await;
    let counts = tally(names.iter().map(String::as_str));
    let weights: Vec<(String, u32)> = providers.iter().map(name).zip([1, 2, 3]).collect();
    eprintln!(
        "provider processes, weighted_random over 6,000 calls, weights {weights:?} (expected \
         1000/2000/3000): {counts:?}"
    );
    for (name, weight) in &weights {
        let expected = 6000.0 * f64::from(*weight) / 6.0;
        let got = counts.get(name).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= expected * 0.10,
            "{name} (weight {weight}) answered {got} calls, expected {expected} ± 10%: {counts:?}"
        );
    }

    // Now SIGKILL the busiest provider mid-run.
    let calls = Calls::start(&calculator);
    calls
        .wait_for_more(1000, "1,000 calls before the kill")
        .await;
    let mut victim = providers.pop().expect("three providers");
    victim.kill().await;
    let killed = Instant::now();
    poll_until("the consumer drops the killed provider", || {
        !client.providers().contains(&victim.addr())
    })
    .await;
    let dropped = Instant::now();
    calls
        .wait_for_more(2000, "2,000 calls after the drop")
        .await;
    let outcomes = calls.stop().await;

    let before = answered_in(&outcomes, ..killed);
    let between = answered_in(&outcomes, killed..dropped);
    let after = answered_in(&outcomes, dropped..);
    eprintln!(
        "provider processes, {} killed with SIGKILL: {} calls; answers before the kill \
         {before:?}, between the kill and the drop {between:?}, after the drop {after:?}; the \
         consumer dropped it {:?} after the kill (TTL {TTL_MS} ms)",
        name(&victim),
        outcomes.len(),
        dropped - killed,
    );
    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {} idempotent calls failed, e.g. {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        after.get(&name(&victim)),
        None,
        "answers from the killed provider after the consumer dropped it"
    );
    for survivor in &providers {
        assert!(
            after.contains_key(&name(survivor)),
            "{} still serves: {after:?}",
            name(survivor)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_started_mid_run_answers_calls() {
    let zookeeper = ZooKeeper::start();
    let providers = three_providers(&zookeeper).await;
    let (client, calculator) = discover(&zookeeper.url(), 3).await;
    until_each_answers(&calculator, &providers.iter().collect::<Vec<_>>()).await;
    let calls = Calls::start(&calculator);
    calls
        .wait_for_more(500, "500 calls before the fourth provider")
        .await;

    // It says it listens once it is registered.
    let fourth = start_provider(3, &zookeeper.url()).await;
    let registered = Instant::now();
    poll_until("the consumer lists the fourth provider", || {
        client.providers().contains(&fourth.addr())
    })
    .await;
    let listed = registered.elapsed();
    let answered = timeout(WAIT, async {
        while !calls
            .outcomes()
            .iter()
            .any(|o| o.at >= registered && o.answer.as_deref() == Ok(name(&fourth).as_str()))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
    .then(|| registered.elapsed());
    calls
        .wait_for_more(500, "500 calls after the fourth provider")
        .await;
    let outcomes = calls.stop().await;
    eprintln!(
        "provider processes, a fourth started mid-run: listed by the consumer {listed:?} after \
         it registered, first answer {answered:?} after it registered; answers since: {:?}",
        answered_in(&outcomes, registered..)
    );
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
    // How soon is printed above, not asserted: a loaded machine stretches it.
    assert!(
        answered.is_some(),
        "the fourth provider answered no call within {WAIT:?}"
    );
}
