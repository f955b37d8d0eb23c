//! The etcd registry against real etcd servers: the stored layout read back with `etcdctl`,
//! change propagation to another registry, recovery after a revoked lease, consumers riding out
//! an etcd outage, and a three-node cluster losing a node.
//!
//! Each test starts its own server (or cluster) through `scripts/registry-servers.sh`, on ports
//! no other test uses, and stops it and removes its data when it ends.

#![cfg(feature = "etcd")]

mod support;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use support::{
    Echo, EchoClient, EchoServer, MathError, assert_serves,
    proxy::{Mode, Proxy},
    servers::{Kind, TestServer},
};
use tether::{
    CallOptions, Client, Server, ServiceKey,
    registry::{EtcdRegistry, Instance, Registry, RegistryConfig, Role, Subscription},
};

/// Shows the library's logs in a failing test's output (and with `--nocapture`); `RUST_LOG`
/// overrides the default level.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tether=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The test service's key, as the server registers it.
fn key() -> ServiceKey {
    ServiceKey::new(support::SERVICE).with_version(support::VERSION)
}

/// An etcd server (or cluster) of one test. Stopping it leaves its directory behind, and etcd
/// preallocates 64 MB of write-ahead log per node, so its directories go when the test ends.
#[derive(Debug)]
struct Etcd {
    server: Option<TestServer>,
    dirs: Vec<PathBuf>,
}

impl Etcd {
    fn start(kind: Kind) -> Self {
        let server = TestServer::start(kind, &[]);
        let run_dir = script_path("RUN_DIR")
            .map(PathBuf::from)
            .expect("the script names its run directory");
        let mut dirs = vec![run_dir.join(server.name())];
        if kind == Kind::EtcdCluster {
            dirs.extend((1..=3).map(|n| run_dir.join(format!("{}-{n}", server.name()))));
        }
        Self {
            server: Some(server),
            dirs,
        }
    }
}

impl std::ops::Deref for Etcd {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.server.as_ref().expect("running until dropped")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        drop(self.server.take()); // stops it
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Registry settings with a lease of `ttl`, and operations bounded by 2 s.
fn config(ttl: Duration) -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.ttl = ttl;
    config.timeout = Duration::from_secs(2);
    config
}

async fn connect(endpoints: &str, ttl: Duration) -> EtcdRegistry {
    support::bounded(
        "connecting to etcd",
        EtcdRegistry::connect(endpoints, config(ttl)),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to etcd at {endpoints}: {e}"))
}

/// A `NAME=value` line of what `registry-servers.sh paths` prints: where the tools are.
fn script_path(name: &str) -> Option<String> {
    static PATHS: OnceLock<String> = OnceLock::new();
    PATHS
        .get_or_init(support::servers::paths)
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}

/// Runs `etcdctl --endpoints=endpoint ARGS…` (API v3) and returns its stdout.
async fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let program = script_path("ETCDCTL").unwrap_or_else(|| "etcdctl".to_owned());
    let mut command = Command::new(program);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(args);
    let what = format!("etcdctl {args:?}");
    let output = support::bounded(&what, tokio::task::spawn_blocking(move || command.output()))
        .await
        .expect("the etcdctl task")
        .expect("etcdctl runs");
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
}

/// A key as `etcdctl get -w json` shows it.
#[derive(Debug)]
struct Stored {
    value: String,
    lease: i64,
}

/// Every key under `prefix`, read with `etcdctl get --prefix -w json`.
async fn stored(endpoint: &str, prefix: &str) -> BTreeMap<String, Stored> {
    let json = etcdctl(endpoint, &["get", "--prefix", prefix, "-w", "json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("etcdctl prints JSON");
    let kvs = json["kvs"].as_array().cloned().unwrap_or_default();
    kvs.iter()
        .map(|kv| {
            let text = |field: &str| {
                let encoded = kv[field].as_str().unwrap_or_default();
                String::from_utf8(base64_decode(encoded)).expect("UTF-8 keys and values")
            };
            let lease = kv["lease"].as_i64().unwrap_or(0);
            (
                text("key"),
                Stored {
                    value: text("value"),
                    lease,
                },
            )
        })
        .collect()
}

/// The lease `key` is attached to, 0 if none or if the key is missing.
async fn lease_of(endpoint: &str, key: &str) -> i64 {
    stored(endpoint, key).await.get(key).map_or(0, |s| s.lease)
}

/// Standard base64 with padding, as etcdctl's JSON writes bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes().filter(|b| *b != b'=') {
        let sextet = ALPHABET
            .iter()
            .position(|a| *a == byte)
            .expect("a base64 character");
        bits = (bits << 6) | u32::try_from(sextet).expect("below 64");
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).expect("a byte"));
        }
    }
    out
}

/// Waits until the subscription's providers satisfy `done`, at most `within`, and returns how
/// long that took.
async fn wait_for(
    subscription: &mut Subscription,
    what: &str,
    within: Duration,
    done: impl Fn(&[Instance]) -> bool,
) -> Duration {
    let started = Instant::now();
    let waited = tokio::time::timeout(within, async {
        let mut providers = subscription.providers();
        while !done(&providers) {
            providers = subscription
                .changed()
                .await
                .expect("the registry outlives its subscription");
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{what}: not within {within:?}; providers now {:?}",
        subscription.providers()
    );
    started.elapsed()
}

/// The `Echo` service, for the servers of these tests (the support module's implementation
/// cannot be built outside it).
#[derive(Debug)]
struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, id: u64, text: String) -> (u64, String) {
        (id, text)
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        match b {
            0 => Err(MathError::DivideByZero),
            _ => a.checked_div(b).ok_or(MathError::Overflow),
        }
    }

    async fn panics(&self) {
        panic!("the test service panics on purpose");
    }

    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn notify(&self, _value: u64) {}

    async fn ping(&self) {}
}

/// A tether server of `Echo` on a free port of 127.0.0.1, registered in `registry`.
async fn provider(registry: Arc<dyn Registry>) -> Server {
    support::bounded(
        "starting a registered server",
        Server::builder()
            .serve(EchoServer::new(Echoer))
            .registry(registry)
            .bind("127.0.0.1:0"),
    )
    .await
    .expect("the server binds and registers")
}

/// A client of `Echo` following `registry`, returned once a call went through.
async fn consumer(registry: Arc<dyn Registry>) -> (Client, EchoClient) {
    let client = support::bounded("discovering", Client::builder().discover(registry, key()))
        .await
        .expect("the client subscribes");
    let echo = EchoClient::new(client.clone());
    // The provider's connection opens in the background. A call made meanwhile waits for the
    // client's state to change, and that state can miss a connection that became ready while
    // the client was being set up (cluster/directory.rs subscribes to the connection's state
    // after first reading it); so probe with short calls, bounded, until one goes through.
    let probe = echo.with_options(CallOptions::default().with_timeout(Duration::from_millis(250)));
    let polled = tokio::time::timeout(support::WAIT, async {
        loop {
            match probe.ping().await {
                Ok(()) => return,
                Err(error) if error.is_unavailable() || error.is_timeout() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => panic!("the first call failed: {error}"),
            }
        }
    })
    .await;
    assert!(
        polled.is_ok(),
        "no provider became ready within {:?}",
        support::WAIT
    );
    (client, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_follow_the_documented_layout() {
    init_logs();
    let server = Etcd::start(Kind::Etcd);
    let registry = connect(server.addr(), Duration::from_secs(10)).await;

    let mut provider = Instance::new(&key(), "127.0.0.1", 20880);
    provider.methods = vec!["echo".to_owned(), "add".to_owned()];
    provider.serializations = vec!["json".to_owned()];
    provider.tags.insert("zone".to_owned(), "a".to_owned());
    let consumer = Instance::consumer(&key(), "127.0.0.1");
    registry
        .register(Role::Provider, provider.clone())
        .await
        .unwrap();
    registry
        .register(Role::Consumer, consumer.clone())
        .await
        .unwrap();

    let all = stored(server.addr(), "/tether").await;
    let provider_key = "/tether/test.Echo/1.0.0/-/providers/127.0.0.1:20880";
    // A consumer's id is `host:0@pid`; `@` is percent-encoded like any byte outside the
    // segment alphabet.
    let consumer_key = format!(
        "/tether/test.Echo/1.0.0/-/consumers/127.0.0.1:0%40{}",
        std::process::id()
    );
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        vec![&consumer_key, &provider_key.to_owned()],
        "exactly one key per registration"
    );
    for (stored_key, instance) in [
        (provider_key, &provider),
        (consumer_key.as_str(), &consumer),
    ] {
        let entry = &all[stored_key];
        let value: serde_json::Value = serde_json::from_str(&entry.value).unwrap();
        assert_eq!(
            value,
            serde_json::to_value(instance).unwrap(),
            "{stored_key} holds the instance's JSON"
        );
        assert_eq!(
            Instance::from_json(entry.value.as_bytes()).unwrap(),
            *instance
        );
    }

    // Both keys carry the registry's one lease, with the configured TTL.
    let lease = all[provider_key].lease;
    assert_ne!(lease, 0, "the provider's key has a lease");
    assert_eq!(all[&consumer_key].lease, lease, "one lease per registry");
    let ttl = etcdctl(
        server.addr(),
        &["lease", "timetolive", &format!("{lease:x}")],
    )
    .await;
    assert!(ttl.contains("granted with TTL(10s)"), "{ttl}");

    // Consumers are not providers.
    let mut subscription = registry.subscribe(&key()).await.unwrap();
    assert_eq!(*subscription.providers(), vec![provider.clone()]);

    // Deregistering removes the key at once.
    registry
        .deregister(Role::Provider, &provider)
        .await
        .unwrap();
    let left = stored(server.addr(), "/tether").await;
    assert_eq!(left.keys().collect::<Vec<_>>(), vec![&consumer_key]);

    // Dropping the registry ends its subscriptions and revokes its lease: the consumer's key
    // goes at once, well before the 10 s TTL. No event tells this side: poll etcdctl, bounded.
    drop(registry);
    // (`changed` may first return the set it had not yet returned.)
    support::bounded("the subscription ending", async {
        while subscription.changed().await.is_some() {}
    })
    .await;
    let dropped = Instant::now();
    let emptied = tokio::time::timeout(Duration::from_secs(3), async {
        while !stored(server.addr(), "/tether").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(emptied.is_ok(), "the keys outlived the dropped registry");
    let leases = etcdctl(server.addr(), &["lease", "list"]).await;
    assert!(!leases.contains(&format!("{lease:x}")), "{leases}");
    eprintln!(
        "etcd: keys gone {:?} after the registry was dropped",
        dropped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_registry_sees_new_gone_and_crashed_providers() {
    init_logs();
    let server = Etcd::start(Kind::Etcd);
    let ttl = Duration::from_secs(2);
    let subscriber = connect(server.addr(), ttl).await;
    let mut subscription = subscriber.subscribe(&key()).await.unwrap();
    assert!(subscription.providers().is_empty());

    let registry = connect(server.addr(), ttl).await;
    let graceful = Instance::new(&key(), "127.0.0.1", 1001);
    let called = Instant::now();
    registry
        .register(Role::Provider, graceful.clone())
        .await
        .unwrap();
    let returned = called.elapsed();
    let seen = wait_for(
        &mut subscription,
        "a new provider",
        Duration::from_secs(1),
        |p| p == [graceful.clone()],
    )
    .await;
    eprintln!(
        "etcd: new provider seen {seen:?} after register returned ({returned:?} after it was called)"
    );

    let called = Instant::now();
    registry
        .deregister(Role::Provider, &graceful)
        .await
        .unwrap();
    let returned = called.elapsed();
    let gone = wait_for(
        &mut subscription,
        "a deregistration",
        Duration::from_secs(1),
        <[Instance]>::is_empty,
    )
    .await;
    eprintln!(
        "etcd: deregistration seen {gone:?} after deregister returned ({returned:?} after it was called)"
    );

    // A provider whose every connection to etcd goes through a proxy, which then cuts them:
    // as for a crashed process, nothing keeps its lease alive any more.
    let upstream = server.addr().parse().expect("host:port");
    let proxy = Proxy::start(upstream).await;
    let crashing = connect(&proxy.addr().to_string(), ttl).await;
    let doomed = Instance::new(&key(), "127.0.0.1", 1002);
    crashing
        .register(Role::Provider, doomed.clone())
        .await
        .unwrap();
    wait_for(
        &mut subscription,
        "the provider that will crash",
        Duration::from_secs(1),
        |p| p == [doomed.clone()],
    )
    .await;
    proxy.set_mode(Mode::Reset);
    let removed = wait_for(
        &mut subscription,
        "a crashed provider's removal",
        ttl + Duration::from_secs(2),
        <[Instance]>::is_empty,
    )
    .await;
    eprintln!(
        "etcd: crashed provider removed {removed:?} after its connections were cut (ttl {ttl:?})"
    );
    drop(crashing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_is_replaced_and_the_registration_comes_back() {
    init_logs();
    let server = Etcd::start(Kind::Etcd);
    let ttl = Duration::from_secs(3);
    let registry = connect(server.addr(), ttl).await;
    let instance = Instance::new(&key(), "127.0.0.1", 1003);
    registry
        .register(Role::Provider, instance.clone())
        .await
        .unwrap();
    let subscriber = connect(server.addr(), ttl).await;
    let mut subscription = subscriber.subscribe(&key()).await.unwrap();
    assert_eq!(*subscription.providers(), vec![instance.clone()]);

    let key_path = "/tether/test.Echo/1.0.0/-/providers/127.0.0.1:1003";
    let old = lease_of(server.addr(), key_path).await;
    let listed = etcdctl(server.addr(), &["lease", "list"]).await;
    assert!(listed.contains(&format!("{old:x}")), "{listed}");
    etcdctl(server.addr(), &["lease", "revoke", &format!("{old:x}")]).await;
    let revoked = Instant::now();

    // The revocation deleted the key: the subscriber is told (possibly together with the
    // return, if both came before it looked), then ends up with the provider again.
    let noticed = support::bounded("a change after the revocation", subscription.changed())
        .await
        .expect("the registry lives");
    let back = wait_for(
        &mut subscription,
        "the registration coming back",
        ttl + Duration::from_secs(3),
        |p| p == [instance.clone()],
    )
    .await;
    eprintln!(
        "etcd: after the lease was revoked, the subscriber saw {} provider(s), then the provider again {:?} after the revocation",
        noticed.len(),
        revoked.elapsed()
    );
    assert!(back < ttl + Duration::from_secs(3));

    // The key is back on a new lease, which the registry keeps alive. There is no event for
    // that on this side: poll etcdctl, bounded.
    let polled = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let lease = lease_of(server.addr(), key_path).await;
            if lease != 0 && lease != old {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let new = polled.expect("the key is on a new lease");
    let ttl_left = etcdctl(server.addr(), &["lease", "timetolive", &format!("{new:x}")]).await;
    assert!(ttl_left.contains("granted with TTL(3s)"), "{ttl_left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_keep_calling_known_providers_while_etcd_is_down() {
    init_logs();
    let server = Etcd::start(Kind::Etcd);
    let ttl = Duration::from_secs(2);
    let provider_registry: Arc<dyn Registry> = Arc::new(connect(server.addr(), ttl).await);
    let tether_server = provider(provider_registry).await;
    let consumer_registry: Arc<dyn Registry> = Arc::new(connect(server.addr(), ttl).await);
    let (client, echo) = consumer(consumer_registry.clone()).await;
    let mut subscription = consumer_registry.subscribe(&key()).await.unwrap();
    assert_eq!(client.providers(), vec![tether_server.local_addr()]);
    assert_serves(&echo, "before etcd stops").await;

    server.stop_node(None);
    let stopped = Instant::now();
    // Calls paced over a few seconds, past the lease TTL: the consumer keeps its provider.
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    let mut calls = 0;
    while stopped.elapsed() < ttl + Duration::from_secs(1) {
        pace.tick().await;
        assert_serves(&echo, "while etcd is down").await;
        calls += 1;
    }
    assert!(calls >= 8, "only {calls} rounds of calls");
    assert_eq!(client.providers(), vec![tether_server.local_addr()]);
    assert_eq!(
        subscription.providers().len(),
        1,
        "the subscription kept its set"
    );
    eprintln!(
        "etcd: {calls} rounds of calls succeeded over {:?} with etcd stopped",
        stopped.elapsed()
    );

    // etcd comes back: the subscriptions read and watch again by themselves, the first
    // provider is still (or again) registered, and a new one is seen.
    server.start_node(None);
    let restarted = Instant::now();
    let second = provider(Arc::new(connect(server.addr(), ttl).await)).await;
    let mut expected = vec![
        tether_server.local_addr().to_string(),
        second.local_addr().to_string(),
    ];
    expected.sort();
    let seen = wait_for(
        &mut subscription,
        "both providers once etcd is back",
        Duration::from_secs(10),
        |p| p.iter().map(Instance::address).collect::<Vec<_>>() == expected,
    )
    .await;
    eprintln!(
        "etcd: after the restart, a new provider seen {seen:?} after it registered ({:?} after the restart)",
        restarted.elapsed()
    );
    support::poll_until(
        "the consumer follows the registry again",
        Duration::from_secs(10),
        || client.providers().len() == 2,
    )
    .await;
    assert_serves(&echo, "after etcd is back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_survives_losing_a_node() {
    init_logs();
    let cluster = Etcd::start(Kind::EtcdCluster);
    let endpoints = cluster.addr().to_owned();
    assert_eq!(endpoints.split(',').count(), 3, "{endpoints}");
    let ttl = Duration::from_secs(3);

    let first_registry: Arc<dyn Registry> = Arc::new(connect(&endpoints, ttl).await);
    let first = provider(first_registry.clone()).await;
    // Several watchers, each with its own connections: whichever node each one's watch runs
    // on, most runs stop one of them under a watch.
    let mut watchers = Vec::new();
    let mut others = Vec::new();
    for _ in 0..3 {
        let watcher = connect(&endpoints, ttl).await;
        let subscription = watcher.subscribe(&key()).await.unwrap();
        assert_eq!(subscription.providers().len(), 1);
        others.push(subscription);
        watchers.push(watcher);
    }
    let mut subscription = others.pop().expect("three watchers");
    let consumer_registry: Arc<dyn Registry> = Arc::new(connect(&endpoints, ttl).await);
    let (client, echo) = consumer(consumer_registry).await;
    assert_serves(&echo, "the whole cluster up").await;

    cluster.stop_node(Some(1));
    let stopped = Instant::now();

    // Registration works: a new registry (the stopped node among its endpoints) and a new
    // provider.
    let second_registry: Arc<dyn Registry> = Arc::new(connect(&endpoints, ttl).await);
    let second = provider(second_registry).await;
    let registered = stopped.elapsed();
    // Subscription works: the watcher sees it.
    let seen = wait_for(
        &mut subscription,
        "a provider registered after a node stopped",
        Duration::from_secs(5),
        |p| p.len() == 2,
    )
    .await;
    eprintln!(
        "etcd cluster: with node 1 stopped, registered within {registered:?}, seen {seen:?} later"
    );
    for (n, other) in others.iter_mut().enumerate() {
        wait_for(
            other,
            &format!("watcher {n} sees the new provider"),
            Duration::from_secs(5),
            |p| p.len() == 2,
        )
        .await;
    }
    let mut addresses: Vec<_> = subscription
        .providers()
        .iter()
        .map(Instance::address)
        .collect();
    addresses.sort();
    let mut expected = vec![
        first.local_addr().to_string(),
        second.local_addr().to_string(),
    ];
    expected.sort();
    assert_eq!(addresses, expected);

    // Calls work, and the consumer learns of the new provider too.
    support::poll_until(
        "the consumer lists both providers",
        Duration::from_secs(5),
        || client.providers().len() == 2,
    )
    .await;
    for round in 0..10 {
        assert_serves(&echo, &format!("round {round} with a node down")).await;
    }

    // The lease survives the stop: the first provider is still registered a TTL later.
    let known = subscription.providers();
    let stays = tokio::time::timeout(ttl + Duration::from_secs(1), async {
        loop {
            match subscription.changed().await {
                Some(providers) if providers == known => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(stays.is_err(), "the provider set changed: {stays:?}");
    drop(first_registry);
}
