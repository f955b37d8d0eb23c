//! The cluster client end to end: providers found in a real ZooKeeper and picked by weight, a
//! provider that crashes mid-run and one that joins mid-run, the forking, broadcast and failsafe
//! strategies against providers that are slow or fail, and clients of a fixed list of addresses.
//!
//! The providers serve `test.Cluster`, a service of this file whose handlers count their calls
//! and behave as the test says: answer at once, answer after a delay, or panic (which the caller
//! sees as a server error).
//!
//! The tests that use ZooKeeper start their own server through `scripts/registry-servers.sh` and
//! run on a multi-threaded runtime, calling the script in `block_in_place` so that the registries'
//! tasks keep running meanwhile.

#![cfg(feature = "zookeeper")]

mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use support::{
    WAIT, bounded, poll_until,
    ports::ReservedPort,
    proxy::{Mode, Proxy},
    servers::{Kind, TestServer},
};
use tether::{
    Client, ClientConfig, Cluster, ErrorKind, Server, ServerConfig, balance::RoundRobin,
    registry::Registry,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

/// The service every provider of this file serves.
#[tether::service(name = "test.Cluster", version = "1.0.0")]
pub(crate) trait Member {
    /// The name of the provider that ran the call.
    #[idempotent]
    async fn whoami(&self) -> String;
    /// `Some(key)`: a method whose return type a `null` fallback decodes as.
    #[idempotent]
    async fn lookup(&self, key: u64) -> Option<u64>;
}

/// What a provider does with each call, after counting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answers at once.
    Healthy,
    /// Answers after the delay.
    Slow(Duration),
    /// Panics: the caller gets a `ServerError`.
    Failing,
}

/// How long a [`Behaviour::Slow`] provider takes in these tests: long enough that a healthy
/// provider answers well before it even on a loaded machine.
const SLOW: Duration = Duration::from_secs(2);

/// The registry TTL (the ZooKeeper session timeout) of every process in these tests.
const TTL_MS: u64 = 2000;

/// What one provider's handlers share with the test.
#[derive(Debug)]
struct Node {
    name: String,
    behaviour: Mutex<Behaviour>,
    /// `whoami` calls that reached the handler, whatever happened next: what the tests count.
    calls: AtomicU64,
    /// `lookup` calls likewise: the warm-up calls, kept apart so that a warm-up call still on
    /// its way (a fork whose twin already answered) cannot be counted as a test's call.
    lookups: AtomicU64,
    /// Wakes [`Node::wait_for_calls`] on each call.
    called: Notify,
}

impl Node {
    fn new(name: &str, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            behaviour: Mutex::new(behaviour),
            calls: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            called: Notify::new(),
        })
    }

    fn behaviour(&self) -> Behaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = behaviour;
    }

    /// `whoami` calls so far.
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// `lookup` calls so far.
    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    /// Counts the call on `counter`, then behaves.
    async fn serve(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.called.notify_waiters();
        match self.behaviour() {
            Behaviour::Healthy => {}
            Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
            Behaviour::Failing => panic!("provider {} fails on purpose", self.name),
        }
    }

    /// Waits until the handler has seen at least `calls` `whoami` calls, at most `within`;
    /// whether it did.
    async fn wait_for_calls(&self, calls: u64, within: Duration) -> bool {
        let reached = tokio::time::timeout(within, async {
            loop {
                let notified = self.called.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.calls() >= calls {
                    return;
                }
                notified.await;
            }
        })
        .await;
        reached.is_ok()
    }
}

/// The implementation of [`Member`]: every method goes through [`Node::serve`].
#[derive(Debug)]
struct MemberService(Arc<Node>);

impl Member for MemberService {
    async fn whoami(&self) -> String {
        self.0.serve(&self.0.calls).await;
        self.0.name.clone()
    }

    async fn lookup(&self, key: u64) -> Option<u64> {
        self.0.serve(&self.0.lookups).await;
        Some(key)
    }
}

/// A running provider of [`Member`] and its node.
#[derive(Debug)]
struct Provider {
    server: Server,
    node: Arc<Node>,
}

impl Provider {
    /// A provider named `name` on a free port of 127.0.0.1, registered in `registry` if given.
    async fn start(
        name: &str,
        behaviour: Behaviour,
        config: ServerConfig,
        registry: Option<Arc<dyn Registry>>,
    ) -> Self {
        let listener = bounded("binding a provider", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("a provider binds 127.0.0.1:0");
        Self::start_on(listener, name, behaviour, config, registry).await
    }

    /// A provider serving on `listener`; see [`Provider::start`].
    async fn start_on(
        listener: TcpListener,
        name: &str,
        behaviour: Behaviour,
        config: ServerConfig,
        registry: Option<Arc<dyn Registry>>,
    ) -> Self {
        let addr = listener.local_addr().expect("a bound listener's address");
        let node = Node::new(name, behaviour);
        let mut builder = Server::builder()
            .config(config)
            .serve(MemberServer::new(MemberService(node.clone())));
        if let Some(registry) = registry {
            builder = builder.registry(registry);
        }
        let server = bounded("starting a provider", builder.listen(listener))
            .await
            .unwrap_or_else(|e| panic!("provider {name} serves on {addr} and registers: {e}"));
        Self { server, node }
    }

    /// A healthy provider registered in `registry` with `weight`.
    async fn weighted(name: &str, weight: u32, registry: Arc<dyn Registry>) -> Self {
        Self::start(name, Behaviour::Healthy, weighted(weight), Some(registry)).await
    }

    /// A healthy provider in no registry.
    async fn unregistered(name: &str) -> Self {
        Self::start(name, Behaviour::Healthy, ServerConfig::default(), None).await
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// Server settings with a registered weight.
fn weighted(weight: u32) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.weight = weight;
    config
}

/// Shows the library's warnings in a failing test's output (and with `--nocapture`);
/// `RUST_LOG` overrides the default level.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tether=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

// -------------------------------------------------------------------------------------------------
// ZooKeeper and discovery.
// -------------------------------------------------------------------------------------------------

/// A ZooKeeper of this test's own on a free port of 127.0.0.1, stopped when dropped.
fn start_zookeeper() -> TestServer {
    tokio::task::block_in_place(|| {
        TestServer::start(Kind::ZooKeeper, &["--max-session-ms", "20000"])
    })
}

/// A ZooKeeper registry with its own session at `addr`, with the tests' TTL.
async fn registry(addr: &str) -> Arc<dyn Registry> {
    let url = format!("zookeeper://{addr}?ttl_ms={TTL_MS}");
    bounded("connecting to ZooKeeper", tether::registry::connect(&url))
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"))
}

/// The client settings of the discovery tests: weighted random, full weights at once.
fn weighted_random() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.balance = "weighted_random".to_owned();
    config.warmup = Duration::ZERO;
    config
}

/// A client of [`Member`] following the providers registered in the ZooKeeper at `zookeeper`,
/// once it lists `expected` of them.
async fn discover(
    zookeeper: &str,
    config: ClientConfig,
    expected: usize,
) -> (Client, MemberClient) {
    let client = bounded(
        "discovering",
        Client::builder()
            .config(config)
            .discover(registry(zookeeper).await, MemberClient::DESCRIPTOR.key()),
    )
    .await
    .expect("the client subscribes");
    poll_until("the consumer lists every provider", WAIT, || {
        client.providers().len() == expected
    })
    .await;
    (client.clone(), MemberClient::new(client))
}

/// Calls `lookup` until each of `providers` has run one: then the consumer has a ready
/// connection to each, and the balancer chooses among all of them.
async fn until_each_answers(members: &MemberClient, providers: &[&Provider]) {
    bounded("every provider answers a call", async {
        while providers.iter().any(|p| p.node.lookups() == 0) {
            members.lookup(0).await.expect("a warm-up call");
        }
    })
    .await;
}

/// How many answers came from each provider, by name.
fn tally<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts
}

/// Checks that each provider's share of `counts` is within 10% (relative) of its weight's share.
fn assert_split(what: &str, counts: &BTreeMap<String, usize>, weights: &[(&str, u32)]) {
    let total: usize = counts.values().sum();
    let weight_sum: u32 = weights.iter().map(|&(_, weight)| weight).sum();
    for &(name, weight) in weights {
        let expected = total as f64 * f64::from(weight) / f64::from(weight_sum);
        let got = counts.get(name).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= expected * 0.10,
            "{what}: {name} (weight {weight}) answered {got} of {total} calls, expected \
             {expected:.0} ± 10%; all: {counts:?}"
        );
    }
}

/// One call's outcome in a [`Load`].
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    /// The name of the provider that answered, or the error.
    answer: Result<String, String>,
}

/// `tasks` tasks calling `whoami` until stopped, each pausing [`Load::PACE`] between calls,
/// recording every outcome.
struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    done: watch::Receiver<usize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// The pause after each call: calls keep coming, and the callers leave the two CPUs of a CI
    /// machine to ZooKeeper and the providers' sessions (whose heartbeats a saturated machine
    /// could delay past the TTL).
    const PACE: Duration = Duration::from_millis(1);

    fn start(members: &MemberClient, tasks: usize) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (done_sender, done) = watch::channel(0);
        let done_sender = Arc::new(done_sender);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|_| {
                let members = members.clone();
                let outcomes = outcomes.clone();
                let done = done_sender.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let answer = members
                            .whoami()
                            .await
                            .map_err(|e| format!("{:?}: {e}", e.kind()));
                        let at = Instant::now();
                        outcomes
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .push(Outcome { at, answer });
                        done.send_modify(|done| *done += 1);
                        tokio::time::sleep(Self::PACE).await;
                    }
                })
            })
            .collect();
        Self {
            outcomes,
            done,
            stop,
            tasks,
        }
    }

    /// Waits until `more` calls past the ones done now are done.
    async fn wait_for_more(&mut self, more: usize, what: &str) {
        let target = *self.done.borrow_and_update() + more;
        bounded(what, self.done.wait_for(|&done| done >= target))
            .await
            .expect("the load's tasks run");
    }

    /// Stops the tasks once their calls in flight end, and returns every outcome.
    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            bounded("stopping the load", task)
                .await
                .expect("a load task does not panic");
        }
        let outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outcomes.clone()
    }
}

/// The errors among `outcomes`.
fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter_map(|o| o.answer.as_ref().err().map(String::as_str))
        .collect()
}

/// The names of the providers that answered the calls of `outcomes` done in `range` of time.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_splits_calls_by_registered_weight() {
    init_logs();
    let zookeeper = start_zookeeper();
    let weights = [("w1", 1), ("w2", 2), ("w3", 3)];
    let mut providers = Vec::new();
    for (name, weight) in weights {
        providers.push(Provider::weighted(name, weight, registry(zookeeper.addr()).await).await);
    }
    let (_client, members) = discover(zookeeper.addr(), weighted_random(), 3).await;
    until_each_answers(&members, &providers.iter().collect::<Vec<_>>()).await;

    // Four callers, 1,500 calls each.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let members = members.clone();
            tokio::spawn(async move {
                let mut names = Vec::with_capacity(1500);
                for _ in 0..1500 {
                    names.push(members.whoami().await.expect("a call"));
                }
                names
            })
        })
        .collect();
    let mut names = Vec::new();
    for caller in callers {
        names.extend(bounded("6,000 calls", caller).await.expect("a caller"));
    }
    let counts = tally(names.iter().map(String::as_str));
    eprintln!(
        "weighted_random over 6,000 calls, weights w1=1 w2=2 w3=3 (expected 1000/2000/3000): \
         {counts:?}"
    );
    // 10% of the smallest expected count, 1,000, is 3.5 of its standard deviations (28.9).
    assert_split("weighted_random 1/2/3", &counts, &weights);
}

/// A provider crashes mid-run. A crash is modelled as what the consumer and ZooKeeper see of a
/// killed process: its connections reset and its port refusing (the data path goes through a
/// proxy switched to `Mode::Reset`), and its ZooKeeper session neither closed nor kept alive, so
/// that ZooKeeper expires it after the TTL and only then deletes its node (its own ZooKeeper
/// connection goes through a second proxy, switched to `Mode::Reset` as well, so no heartbeat
/// gets through). Dropping its `Server` would not do: that deregisters and sends GoAways, a
/// clean shutdown. Dropping its registry would not either: that closes the session, and
/// ZooKeeper deletes the node at once.
///
/// Once the consumer no longer lists the provider, its address is made reachable again (the
/// data proxy back to `Mode::Pass`), as if something answered there again without registering:
/// a consumer that still held a connection or kept reconnecting to it would now reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_provider_fails_no_idempotent_call_and_gets_none_once_dropped() {
    init_logs();
    let zookeeper = start_zookeeper();
    let w1 = Provider::weighted("w1", 1, registry(zookeeper.addr()).await).await;
    let w2 = Provider::weighted("w2", 2, registry(zookeeper.addr()).await).await;
    // The one that crashes, the busiest: weight 3, behind the two proxies.
    // Its listener first, so that the proxy in front has a port to forward to that nothing
    // else can take meanwhile.
    let upstream = bounded("binding a provider", TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("a provider binds 127.0.0.1:0");
    let data_proxy = Proxy::start(upstream.local_addr().expect("its address")).await;
    let zookeeper_addr: SocketAddr = zookeeper.addr().parse().expect("host:port");
    let zookeeper_proxy = Proxy::start(zookeeper_addr).await;
    let mut config = weighted(3);
    config.advertised_addr = Some(data_proxy.addr().to_string());
    let crashing = Provider::start_on(
        upstream,
        "w3",
        Behaviour::Healthy,
        config,
        Some(registry(&zookeeper_proxy.addr().to_string()).await),
    )
    .await;

    let (client, members) = discover(zookeeper.addr(), weighted_random(), 3).await;
    until_each_answers(&members, &[&w1, &w2, &crashing]).await;
    let mut load = Load::start(&members, 4);
    load.wait_for_more(2000, "2,000 calls before the crash")
        .await;

    data_proxy.set_mode(Mode::Reset);
    zookeeper_proxy.set_mode(Mode::Reset);
    let crashed = Instant::now();
    let calls_at_crash = crashing.node.calls();
    let attempts_at_crash = data_proxy.connections_accepted();

    poll_until("the consumer drops the crashed provider", WAIT, || {
        !client.providers().contains(&data_proxy.addr())
    })
    .await;
    let dropped = Instant::now();
    // The calls in flight at the drop hold the old list of providers, and with it the dropped
    // provider's connection, until they end: a hundred calls later they have.
    load.wait_for_more(100, "the calls in flight at the drop end")
        .await;
    let attempts_at_drop = data_proxy.connections_accepted();
    assert_eq!(
        crashing.node.calls(),
        calls_at_crash,
        "no call gets through a reset proxy"
    );
    // Reachable again, but registered nowhere.
    data_proxy.set_mode(Mode::Pass);
    load.wait_for_more(4000, "4,000 calls after the drop").await;
    let outcomes = load.stop().await;

    let before = answered_in(&outcomes, ..crashed);
    let between = answered_in(&outcomes, crashed..dropped);
    let after = answered_in(&outcomes, dropped..);
    let attempts_after_drop = data_proxy.connections_accepted() - attempts_at_drop;
    eprintln!(
        "crash: {} calls from 4 tasks; answers before the crash {before:?}, between the crash \
         and the drop {between:?}, after the drop {after:?}; the consumer dropped the provider \
         {:?} after the crash (TTL {TTL_MS} ms); connections the consumer opened to it from \
         the crash until the calls in flight at the drop ended: {}, after that, with its address \
         reachable again: {attempts_after_drop}; calls that reached it after the crash: {}",
        outcomes.len(),
        dropped - crashed,
        attempts_at_drop - attempts_at_crash,
        crashing.node.calls() - calls_at_crash,
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
        crashing.node.calls(),
        calls_at_crash,
        "the dropped provider got calls once reachable again"
    );
    assert_eq!(after.get("w3"), None, "answers from the dropped provider");
    assert_eq!(
        attempts_after_drop, 0,
        "the consumer kept connecting to a provider it dropped"
    );
    assert!(
        after.contains_key("w1") && after.contains_key("w2"),
        "the others serve: {after:?}"
    );
    drop(client);
}

/// How long the tests of a provider joining mid-run wait for its first call: well past the two
/// seconds they allow, to tell "late" from "never".
const JOIN_WAIT: Duration = WAIT;

/// Starts three providers and a consumer with `config` calling them from two tasks, then a
/// fourth provider; returns how long after it registered the fourth got its first call, with
/// every call's outcome.
async fn fourth_provider_joins(config: ClientConfig) -> (Option<Duration>, Vec<Outcome>) {
    let zookeeper = start_zookeeper();
    let mut providers = Vec::new();
    for (name, weight) in [("w1", 1), ("w2", 2), ("w3", 3)] {
        providers.push(Provider::weighted(name, weight, registry(zookeeper.addr()).await).await);
    }
    let (client, members) = discover(zookeeper.addr(), config, 3).await;
    until_each_answers(&members, &providers.iter().collect::<Vec<_>>()).await;
    let mut load = Load::start(&members, 2);
    load.wait_for_more(500, "500 calls before the fourth provider")
        .await;

    // `bind` returns once the provider is registered.
    let fourth = Provider::weighted("w4", 3, registry(zookeeper.addr()).await).await;
    let registered = Instant::now();
    poll_until("the consumer lists the fourth provider", WAIT, || {
        client.providers().contains(&fourth.addr())
    })
    .await;
    let listed = registered.elapsed();
    let first_call = fourth
        .node
        .wait_for_calls(1, JOIN_WAIT)
        .await
        .then(|| registered.elapsed());
    load.wait_for_more(500, "500 calls after the fourth provider")
        .await;
    let outcomes = load.stop().await;
    eprintln!(
        "fourth provider (eager = {}): listed by the consumer {listed:?} after it registered; \
         first call {first_call:?} after it registered; answers after it registered: {:?}",
        client.config().eager,
        answered_in(&outcomes, registered..),
    );
    (first_call, outcomes)
}

/// Checks that a fourth provider joining a consumer with `config` mid-run gets calls, without
/// waiting for a call to pick it first (its connection opens as soon as it is listed: an idle
/// one is never ready, so no balancer would ever pick it), and that no call fails meanwhile.
/// How soon is printed, not asserted.
async fn assert_joins(config: ClientConfig) {
    let (first_call, outcomes) = fourth_provider_joins(config).await;
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
    assert!(
        first_call.is_some(),
        "the fourth provider got no call within {JOIN_WAIT:?} of registering"
    );
}

/// With the default settings, connections open lazily: the providers known when the first call
/// is made are all woken by it, and a provider that joins later must be connected too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_started_mid_run_gets_calls() {
    init_logs();
    assert_joins(weighted_random()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_started_mid_run_gets_calls_with_eager_connections() {
    init_logs();
    let mut config = weighted_random();
    config.eager = true;
    assert_joins(config).await;
}

// -------------------------------------------------------------------------------------------------
// Strategies, on fixed lists of addresses.
// -------------------------------------------------------------------------------------------------

/// A client of `providers` by address with `config`.
async fn connect_all(providers: &[&Provider], config: ClientConfig) -> MemberClient {
    let addrs: Vec<SocketAddr> = providers.iter().map(|p| p.addr()).collect();
    let client = bounded(
        "connect_all",
        Client::builder().config(config).connect_all(addrs),
    )
    .await
    .expect("connect_all");
    MemberClient::new(client)
}

/// Client settings with `cluster`, connecting to every provider at once.
fn eager(cluster: Cluster) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.cluster = cluster;
    config.eager = true;
    config
}

/// The calls each provider has seen.
fn calls(providers: &[&Provider]) -> Vec<u64> {
    providers.iter().map(|p| p.node.calls()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forking_answers_the_first_success_and_fails_only_when_every_fork_fails() {
    init_logs();
    let a = Provider::unregistered("a").await;
    let b = Provider::unregistered("b").await;
    let members = connect_all(&[&a, &b], eager(Cluster::Forking { parallel: 2 })).await;
    // With both healthy and ready, each call goes to both.
    until_each_answers(&members, &[&a, &b]).await;

    // One slow, one failing: the failure comes first and does not end the call.
    a.node.set_behaviour(Behaviour::Slow(SLOW));
    b.node.set_behaviour(Behaviour::Failing);
    let seen = calls(&[&a, &b]);
    let started = Instant::now();
    let answer = bounded("forking: slow and failing", members.whoami()).await;
    let took = started.elapsed();
    eprintln!("forking, slow a + failing b: {answer:?} after {took:?}");
    assert_eq!(answer.expect("the slow provider's answer"), "a");
    assert!(
        took >= SLOW,
        "answered after {took:?}, before the slow one could"
    );
    assert_eq!(
        calls(&[&a, &b]),
        [seen[0] + 1, seen[1] + 1],
        "both forks ran"
    );

    // One healthy, one slow: the healthy answer, without waiting for the slow one.
    a.node.set_behaviour(Behaviour::Healthy);
    b.node.set_behaviour(Behaviour::Slow(SLOW));
    let seen = calls(&[&a, &b]);
    let started = Instant::now();
    let answer = bounded("forking: healthy and slow", members.whoami()).await;
    let took = started.elapsed();
    eprintln!("forking, healthy a + slow b: {answer:?} after {took:?}");
    assert_eq!(answer.expect("the healthy provider's answer"), "a");
    assert!(took < SLOW, "waited {took:?} for the slow fork");
    assert!(
        b.node.wait_for_calls(seen[1] + 1, WAIT).await,
        "the slow provider got its fork too"
    );

    // Both failing: the call fails.
    a.node.set_behaviour(Behaviour::Failing);
    b.node.set_behaviour(Behaviour::Failing);
    let seen = calls(&[&a, &b]);
    let answer = bounded("forking: both failing", members.whoami()).await;
    eprintln!("forking, failing a + failing b: {answer:?}");
    let error = answer.expect_err("every fork failed");
    assert_eq!(error.kind(), ErrorKind::ServerError, "{error}");
    assert_eq!(
        calls(&[&a, &b]),
        [seen[0] + 1, seen[1] + 1],
        "both forks ran"
    );
}

/// Forking's promise for a client that has no connection yet: the first call does not go to
/// the one provider that happens to be ready first, or to none; it waits (within its deadline)
/// for the connections being opened and sends a fork to each of `parallel` distinct providers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_clients_first_forked_call_reaches_parallel_distinct_providers() {
    init_logs();
    let a = Provider::unregistered("a").await;
    let b = Provider::unregistered("b").await;
    let c = Provider::unregistered("c").await;
    let all = [&a, &b, &c];

    // Lazy connections (opened by the first call), three forks: every provider gets one.
    let mut config = ClientConfig::default();
    config.cluster = Cluster::Forking { parallel: 3 };
    let members = connect_all(&all, config).await;
    let answer = bounded("the first forked call", members.whoami()).await;
    answer.expect("a fork answers");
    for provider in all {
        assert!(
            provider.node.wait_for_calls(1, WAIT).await,
            "provider {} got no fork of the first call",
            provider.node.name
        );
    }

    // Two forks over three providers: two distinct ones each call.
    let mut config = eager(Cluster::Forking { parallel: 2 });
    config.balance = "round_robin".to_owned();
    let members = connect_all(&all, config).await;
    until_each_answers(&members, &all).await;
    for round in 0..30 {
        let seen = calls(&all);
        bounded("a forked call", members.whoami())
            .await
            .expect("a fork answers");
        // Every fork was sent before the answer, so each runs even if it loses.
        let reached = bounded("both forks run", async {
            loop {
                let now = calls(&all);
                let more: u64 = now.iter().zip(&seen).map(|(n, s)| n - s).sum();
                if more >= 2 {
                    return now;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
        .await;
        let each: Vec<u64> = reached.iter().zip(&seen).map(|(n, s)| n - s).collect();
        assert!(
            each.iter().all(|&n| n <= 1) && each.iter().sum::<u64>() == 2,
            "round {round}: two distinct providers run the call once each, not {each:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_runs_on_every_provider_and_fails_if_any_fails() {
    init_logs();
    let a = Provider::unregistered("a").await;
    let b = Provider::unregistered("b").await;
    let c = Provider::unregistered("c").await;
    let all = [&a, &b, &c];
    let members = connect_all(&all, eager(Cluster::Broadcast)).await;
    until_each_answers(&members, &all).await;

    let seen = calls(&all);
    let answer = bounded("broadcast: all healthy", members.whoami()).await;
    eprintln!("broadcast, all healthy: {answer:?}");
    answer.expect("every provider succeeded");
    assert_eq!(
        calls(&all),
        seen.iter().map(|n| n + 1).collect::<Vec<_>>(),
        "each provider ran the call once"
    );

    b.node.set_behaviour(Behaviour::Failing);
    let seen = calls(&all);
    let answer = bounded("broadcast: b failing", members.whoami()).await;
    eprintln!("broadcast, b failing: {answer:?}");
    let error = answer.expect_err("one provider failed");
    assert_eq!(error.kind(), ErrorKind::ServerError, "{error}");
    assert_eq!(
        calls(&all),
        seen.iter().map(|n| n + 1).collect::<Vec<_>>(),
        "each provider ran the call once"
    );
}

/// A client of `providers` by address whose failed calls answer `fallback`.
async fn failsafe(providers: &[&Provider], fallback: serde_json::Value) -> MemberClient {
    let mut config = ClientConfig::default();
    config.cluster = Cluster::Failsafe { fallback };
    connect_all(providers, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_answers_the_fallback_instead_of_an_error() {
    init_logs();
    let failing =
        Provider::start("failing", Behaviour::Failing, ServerConfig::default(), None).await;

    // `null` decodes as `None`.
    let members = failsafe(&[&failing], json!(null)).await;
    let answer = bounded("failsafe lookup", members.lookup(7)).await;
    assert_eq!(answer.expect("the fallback"), None);
    assert_eq!(failing.node.lookups(), 1, "the call ran and failed");

    // Any value of the return type.
    let members = failsafe(&[&failing], json!("fallback")).await;
    let answer = bounded("failsafe whoami", members.whoami()).await;
    assert_eq!(answer.expect("the fallback"), "fallback");

    // A fallback that is not a value of the return type: the call fails.
    let members = failsafe(&[&failing], json!(null)).await;
    let answer = bounded("failsafe whoami, null fallback", members.whoami()).await;
    eprintln!("failsafe, a fallback of the wrong type: {answer:?}");
    assert!(answer.is_err(), "{answer:?}");

    // No provider reachable at all: the fallback too. (A port bound but not listening
    // refuses every connection.)
    let nothing = ReservedPort::new();
    let down = bounded(
        "connect_all to nothing",
        Client::builder()
            .config({
                let mut config = ClientConfig::default();
                config.cluster = Cluster::Failsafe {
                    fallback: json!(null),
                };
                config
            })
            .connect_all([nothing.addr()]),
    )
    .await
    .expect("connect_all");
    let answer = bounded(
        "failsafe, nothing listening",
        MemberClient::new(down).lookup(7),
    )
    .await;
    assert_eq!(answer.expect("the fallback"), None);

    // A success is passed through.
    failing.node.set_behaviour(Behaviour::Healthy);
    let members = failsafe(&[&failing], json!(null)).await;
    let answer = bounded("failsafe, healthy", members.lookup(7)).await;
    assert_eq!(answer.expect("the answer"), Some(7));
}

// -------------------------------------------------------------------------------------------------
// Fixed lists of addresses.
// -------------------------------------------------------------------------------------------------

/// `n` calls' answers, one after another.
async fn whoami_n(members: &MemberClient, n: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(bounded("a call", members.whoami()).await.expect("a call"));
    }
    names
}

/// Checks that `names` alternates between two providers, each answering half.
fn assert_alternates(names: &[String]) {
    assert!(
        names.windows(2).all(|pair| pair[0] != pair[1]),
        "round robin over two providers alternates: {names:?}"
    );
    let counts = tally(names.iter().map(String::as_str));
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|&n| n == names.len() / 2), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_all_opens_connections_on_the_first_call_and_round_robins() {
    init_logs();
    let a = Provider::unregistered("a").await;
    let b = Provider::unregistered("b").await;
    let mut config = ClientConfig::default();
    config.balance = "round_robin".to_owned();
    let members = connect_all(&[&a, &b], config).await;
    assert_eq!(members.client().providers(), [a.addr(), b.addr()]);
    // Nothing to wait for: a client that connected now would have done so within this time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (a.server.connections(), b.server.connections()),
        (0, 0),
        "connections before the first call"
    );

    let first = bounded("the first call", members.whoami()).await;
    assert!(first.is_ok(), "{first:?}");
    poll_until("the first call connects to both providers", WAIT, || {
        a.server.connections() == 1 && b.server.connections() == 1
    })
    .await;
    until_each_answers(&members, &[&a, &b]).await;
    let names = whoami_n(&members, 20).await;
    eprintln!("round_robin over a fixed list: {names:?}");
    assert_alternates(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_all_eager_connects_before_any_call() {
    init_logs();
    let a = Provider::unregistered("a").await;
    let b = Provider::unregistered("b").await;
    let mut config = ClientConfig::default();
    config.eager = true;
    // By type this time, overriding the config's `random`.
    let client = bounded(
        "connect_all",
        Client::builder()
            .config(config)
            .balancer(RoundRobin::new())
            .connect_all([a.addr(), b.addr()]),
    )
    .await
    .expect("connect_all");
    poll_until("both providers connected without a call", WAIT, || {
        a.server.connections() == 1 && b.server.connections() == 1
    })
    .await;
    assert_eq!(
        (
            a.node.calls() + a.node.lookups(),
            b.node.calls() + b.node.lookups()
        ),
        (0, 0)
    );

    let members = MemberClient::new(client);
    until_each_answers(&members, &[&a, &b]).await;
    assert_alternates(&whoami_n(&members, 20).await);
}
