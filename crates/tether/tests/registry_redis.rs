//! The Redis registry against a real `redis-server`: the documented layout read back with
//! `redis-cli`, change propagation to another process's view (registration, graceful
//! deregistration, crash), recovery after Redis restarts empty, and a consumer that keeps
//! calling its provider while Redis is down.
//!
//! Every test starts its own server on free ports of 127.0.0.1 (`support::servers`), and every
//! wait is bounded. The measured propagation times are printed (`--nocapture` shows them).

#![cfg(feature = "redis")]

mod support;

use std::{
    fmt,
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use tether::{
    Client, ClientConfig, Server, ServiceKey,
    registry::{Instance, RedisRegistry, Registry, RegistryConfig, Role, Subscription},
};
use tokio::time::Instant;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use support::{
    EchoClient, EchoServer, MathError, bounded,
    proxy::{Mode, Proxy},
    servers::{Kind, TestServer},
};

/// The TTL the tests register with: short, so that a crash shows quickly.
const TTL: Duration = Duration::from_secs(2);
/// The re-read period of the tests' subscribers.
const RESYNC: Duration = Duration::from_millis(500);
/// The bound on an event-driven change reaching a subscriber.
const EVENT: Duration = Duration::from_secs(1);

/// The warnings logged in this test binary, as (message, `service` field); `RUST_LOG` also
/// prints the logs.
fn warnings() -> &'static Mutex<Vec<(String, String)>> {
    static WARNINGS: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    WARNINGS.get_or_init(|| {
        // Process-wide, since the tasks run on every worker thread; tests tell their warnings
        // apart by service.
        let _ = tracing_subscriber::registry()
            .with(WarningRecorder)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(EnvFilter::from_default_env()),
            )
            .try_init();
        Mutex::default()
    })
}

/// How many times `message` was logged as a warning for `service`.
fn count_warnings(service: &ServiceKey, message: &str) -> usize {
    let service = service.to_string();
    let warnings = warnings().lock().unwrap_or_else(|p| p.into_inner());
    warnings
        .iter()
        .filter(|(m, s)| m == message && *s == service)
        .count()
}

struct WarningRecorder;

impl<S: tracing::Subscriber> Layer<S> for WarningRecorder {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        #[derive(Default)]
        struct Fields {
            message: String,
            service: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "service" => self.service = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        warnings()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((fields.message, fields.service));
    }
}

fn key() -> ServiceKey {
    ServiceKey::new("demo.Calculator").with_version("1.0.0")
}

fn config(resync_interval: Duration) -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.ttl = TTL;
    config.timeout = Duration::from_secs(1);
    config.resync_interval = resync_interval;
    config
}

fn start_redis() -> TestServer {
    warnings();
    TestServer::start(Kind::Redis, &[])
}

fn socket_addr(server: &TestServer) -> SocketAddr {
    server.addr().parse().expect("the script prints host:port")
}

async fn connect(endpoint: &str, resync_interval: Duration) -> RedisRegistry {
    bounded(
        "connecting to Redis",
        RedisRegistry::connect(endpoint, config(resync_interval)),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to Redis at {endpoint}: {e}"))
}

fn provider(port: u16) -> Instance {
    let mut instance = Instance::new(&key(), "127.0.0.1", port);
    instance.serializations = vec!["json".to_owned(), "bincode".to_owned()];
    instance.methods = vec!["add".to_owned(), "div".to_owned()];
    instance
}

/// `redis-cli -h 127.0.0.1 -p PORT args…`, its stdout without the final newline.
fn redis_cli(server: &TestServer, args: &[&str]) -> String {
    let cli = support::servers::paths()
        .lines()
        .find_map(|line| line.strip_prefix("REDIS_CLI="))
        .map_or_else(|| "redis-cli".to_owned(), str::to_owned);
    let addr = socket_addr(server);
    let output = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        output.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end_matches('\n')
        .to_owned()
}

/// Polls `redis-cli` (which has no event to wait on) until `done` holds for its output, at most
/// `within`; returns the output and how long it took.
async fn poll_redis(
    server: &TestServer,
    args: &[&str],
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> (String, Duration) {
    let started = Instant::now();
    let polled = tokio::time::timeout(within, async {
        loop {
            let output = tokio::task::block_in_place(|| redis_cli(server, args));
            if done(&output) {
                return output;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match polled {
        Ok(output) => (output, started.elapsed()),
        Err(_) => panic!("redis-cli {args:?}: not as expected within {within:?}"),
    }
}

/// Waits until the subscription's providers satisfy `done`, at most `within`; returns them and
/// how long it took from `since`.
async fn wait_for(
    subscription: &mut Subscription,
    what: &str,
    since: Instant,
    within: Duration,
    done: impl Fn(&[Instance]) -> bool,
) -> (Arc<Vec<Instance>>, Duration) {
    let waited = tokio::time::timeout(within, async {
        let mut providers = subscription.providers();
        while !done(&providers) {
            providers = subscription
                .changed()
                .await
                .expect("the registry outlives the subscription");
        }
        providers
    })
    .await;
    match waited {
        Ok(providers) => (providers, since.elapsed()),
        Err(_) => panic!(
            "{what}: not within {within:?}; the subscriber has {:?}",
            addresses(&subscription.providers())
        ),
    }
}

fn addresses(instances: &[Instance]) -> Vec<String> {
    instances.iter().map(Instance::address).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_have_the_documented_layout() {
    let redis = start_redis();
    let registry = connect(redis.addr(), RESYNC).await;
    let provider = provider(20880);
    let consumer = Instance::consumer(&key(), "127.0.0.1");
    bounded(
        "registering",
        registry.register(Role::Provider, provider.clone()),
    )
    .await
    .unwrap();
    bounded(
        "registering",
        registry.register(Role::Consumer, consumer.clone()),
    )
    .await
    .unwrap();

    let provider_key = "/tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:20880";
    let consumer_key = format!(
        "/tether/demo.Calculator/1.0.0/-/consumers/127.0.0.1:0%40{}",
        std::process::id()
    );
    let mut keys: Vec<String> = redis_cli(&redis, &["--scan", "--pattern", "/tether/*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(keys, [consumer_key.clone(), provider_key.to_owned()]);

    for (key, instance) in [
        (provider_key, &provider),
        (consumer_key.as_str(), &consumer),
    ] {
        let json = redis_cli(&redis, &["get", key]);
        assert_eq!(json, instance.to_json(), "{key} holds the instance's JSON");
        assert_eq!(&Instance::from_json(json.as_bytes()).unwrap(), instance);
        assert_eq!(redis_cli(&redis, &["type", key]), "string");
        let ttl: u64 = redis_cli(&redis, &["pttl", key]).parse().unwrap();
        assert!(
            ttl > 0 && ttl <= TTL.as_millis() as u64,
            "{key}: PTTL {ttl} ms, expected 1..={TTL:?}"
        );
    }

    // The owner refreshes the TTL every third of it: the remaining time goes up again.
    let first: u64 = redis_cli(&redis, &["pttl", provider_key]).parse().unwrap();
    let (_, refreshed_after) = poll_redis(&redis, &["pttl", provider_key], TTL, |pttl| {
        pttl.parse::<u64>().is_ok_and(|pttl| pttl > first)
    })
    .await;
    eprintln!("redis: TTL refreshed after {refreshed_after:?}");

    // Consumers are registered apart and are not providers.
    let subscription = bounded("subscribing", registry.subscribe(&key()))
        .await
        .unwrap();
    assert_eq!(*subscription.providers(), vec![provider.clone()]);

    bounded(
        "deregistering",
        registry.deregister(Role::Provider, &provider),
    )
    .await
    .unwrap();
    assert_eq!(redis_cli(&redis, &["get", provider_key]), "");
    assert_eq!(redis_cli(&redis, &["exists", &consumer_key]), "1");
    // Withdrawing what is not there is not an error.
    bounded(
        "deregistering again",
        registry.deregister(Role::Provider, &provider),
    )
    .await
    .unwrap();

    // Dropping the registry deletes what it still holds, best effort.
    drop(registry);
    poll_redis(&redis, &["exists", &consumer_key], EVENT, |n| n == "0").await;
}

#[tokio::test]
async fn connecting_to_nothing_fails_clearly() {
    // Bound but not listening: connections are refused.
    let port = support::ports::ReservedPort::new();
    let nothing = port.addr().to_string();
    let started = Instant::now();
    let error = bounded(
        "connecting to nothing",
        RedisRegistry::connect(&nothing, config(RESYNC)),
    )
    .await
    .expect_err("nothing listens there");
    assert!(error.to_string().contains(&nothing), "{error}");
    assert!(started.elapsed() <= config(RESYNC).timeout + EVENT);
    let error = RedisRegistry::connect("127.0.0.1:1,127.0.0.1:2", config(RESYNC))
        .await
        .expect_err("one address only");
    assert!(error.to_string().contains("one Redis address"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_registrations_deregistrations_and_crashes() {
    let redis = start_redis();
    let subscriber = connect(redis.addr(), RESYNC).await;
    let owner = connect(redis.addr(), RESYNC).await;
    let mut subscription = bounded("subscribing", subscriber.subscribe(&key()))
        .await
        .unwrap();
    assert!(subscription.providers().is_empty());

    let first = provider(1);
    let registered = Instant::now();
    bounded("registering", owner.register(Role::Provider, first.clone()))
        .await
        .unwrap();
    let (providers, seen_after) = wait_for(
        &mut subscription,
        "a new provider",
        registered,
        EVENT,
        |p| !p.is_empty(),
    )
    .await;
    assert_eq!(*providers, vec![first.clone()]);
    eprintln!("redis: new provider seen {seen_after:?} after register was called");

    let deregistered = Instant::now();
    bounded("deregistering", owner.deregister(Role::Provider, &first))
        .await
        .unwrap();
    let (_, seen_after) = wait_for(
        &mut subscription,
        "a graceful deregistration",
        deregistered,
        EVENT,
        <[Instance]>::is_empty,
    )
    .await;
    eprintln!("redis: deregistration seen {seen_after:?} after deregister was called");

    // A provider whose every connection to Redis goes through the proxy: resetting them all is
    // its crash, as far as Redis can tell.
    let proxy = Proxy::start(socket_addr(&redis)).await;
    let doomed = connect(&proxy.addr().to_string(), RESYNC).await;
    let crashing = provider(2);
    let registered = Instant::now();
    bounded(
        "registering",
        doomed.register(Role::Provider, crashing.clone()),
    )
    .await
    .unwrap();
    let (providers, _) = wait_for(
        &mut subscription,
        "the provider about to crash",
        registered,
        EVENT,
        |p| !p.is_empty(),
    )
    .await;
    assert_eq!(*providers, vec![crashing]);

    proxy.set_mode(Mode::Reset);
    let crashed = Instant::now();
    let (_, gone_after) = wait_for(
        &mut subscription,
        "a crashed provider's removal",
        crashed,
        TTL + RESYNC + EVENT,
        <[Instance]>::is_empty,
    )
    .await;
    eprintln!(
        "redis: crashed provider removed {gone_after:?} after the crash (TTL {TTL:?}, resync {RESYNC:?})"
    );
    // The key outlives its last refresh by the TTL, and the refresh came at most a third of
    // the TTL before the crash: a removal much sooner would not be the TTL's doing.
    assert!(
        gone_after >= TTL / 4,
        "removed after {gone_after:?}, before its TTL could end"
    );
    drop(doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_subscriptions_survive_a_restart() {
    let redis = start_redis();
    let owner = connect(redis.addr(), RESYNC).await;
    // A provider that crashes just before the restart, and so never writes itself back.
    let proxy = Proxy::start(socket_addr(&redis)).await;
    let doomed = connect(&proxy.addr().to_string(), RESYNC).await;
    // A re-read period far beyond the test: whatever the subscriber sees after the restart
    // comes through its pub/sub connection, which must have re-subscribed by itself.
    let subscriber = connect(redis.addr(), Duration::from_secs(60)).await;
    let (first, crashing) = (provider(1), provider(3));
    bounded("registering", owner.register(Role::Provider, first.clone()))
        .await
        .unwrap();
    bounded(
        "registering",
        doomed.register(Role::Provider, crashing.clone()),
    )
    .await
    .unwrap();
    let mut subscription = bounded("subscribing", subscriber.subscribe(&key()))
        .await
        .unwrap();
    assert_eq!(
        *subscription.providers(),
        vec![first.clone(), crashing.clone()]
    );

    // Everything the subscriber publishes from now on, to check that it never goes empty.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        let mut subscription = subscription.clone();
        tokio::spawn(async move {
            while let Some(providers) = subscription.changed().await {
                seen.lock().unwrap().push(addresses(&providers));
            }
        })
    };

    proxy.set_mode(Mode::Reset);
    let provider_key = "/tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:1";
    tokio::task::block_in_place(|| redis.restart());
    let restarted = Instant::now();
    let (json, back_after) = poll_redis(&redis, &["get", provider_key], TTL + EVENT, |json| {
        !json.is_empty()
    })
    .await;
    assert_eq!(json, first.to_json());
    eprintln!("redis: registration back {back_after:?} after the restart finished");

    // The subscriber follows changes again, through its new pub/sub connection.
    let second = provider(2);
    let registering = Instant::now();
    bounded(
        "registering",
        owner.register(Role::Provider, second.clone()),
    )
    .await
    .unwrap();
    let (_, seen_after) = wait_for(
        &mut subscription,
        "a provider registered after the restart",
        registering,
        EVENT,
        |p| p.contains(&second),
    )
    .await;
    eprintln!(
        "redis: after the restart, a new provider seen {seen_after:?} after register was called \
         ({:?} after the restart)",
        restarted.elapsed()
    );

    let deregistering = Instant::now();
    bounded("deregistering", owner.deregister(Role::Provider, &second))
        .await
        .unwrap();
    let (_, seen_after) = wait_for(
        &mut subscription,
        "a deregistration after the restart",
        deregistering,
        EVENT,
        |p| !p.contains(&second),
    )
    .await;
    eprintln!(
        "redis: after the restart, a deregistration seen {seen_after:?} after deregister was called"
    );

    // The crashed provider did not come back: it goes when the subscriber's window closes, a
    // TTL after it regained contact.
    let (providers, gone_after) = wait_for(
        &mut subscription,
        "the removal of a provider that did not come back",
        restarted,
        TTL + EVENT,
        |p| !p.contains(&crashing),
    )
    .await;
    assert_eq!(*providers, vec![first.clone()]);
    eprintln!(
        "redis: a provider that did not come back removed {gone_after:?} after the restart \
         (TTL {TTL:?})"
    );

    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|set| set.contains(&first.address())),
        "the subscriber dropped a live provider during the restart: {seen:?}"
    );
}

/// The test service, as the other integration tests serve it.
#[derive(Debug)]
struct Echo;

impl support::Echo for Echo {
    async fn echo(&self, id: u64, text: String) -> (u64, String) {
        (id, text)
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivideByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }

    async fn panics(&self) {}

    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn notify(&self, _value: u64) {}

    async fn ping(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_keeps_calling_while_redis_is_down() {
    let redis = start_redis();
    let service_key = ServiceKey::new(support::SERVICE).with_version(support::VERSION);
    let provider_registry: Arc<dyn Registry> = Arc::new(connect(redis.addr(), RESYNC).await);
    let server = bounded(
        "binding the provider",
        Server::builder()
            .serve(EchoServer::new(Echo))
            .registry(provider_registry)
            .bind("127.0.0.1:0"),
    )
    .await
    .expect("the provider binds and registers");

    let consumer_registry = Arc::new(connect(redis.addr(), RESYNC).await);
    let mut client_config = ClientConfig::default();
    client_config.timeout = Duration::from_secs(2);
    // The first call waits for the connection to the provider; the later ones find it ready.
    client_config.wait_for_ready = true;
    let client = bounded(
        "discovering the provider",
        Client::builder()
            .config(client_config)
            .discover(consumer_registry.clone(), service_key.clone()),
    )
    .await
    .expect("the consumer subscribes");
    assert_eq!(client.providers(), vec![server.local_addr()]);
    let echo = EchoClient::new(client.clone());
    let first = bounded("the first call", echo.add(20, 22)).await;
    assert_eq!(
        first.unwrap_or_else(|e| panic!("the first call: {e:?}")),
        42
    );
    let subscription = bounded("subscribing", consumer_registry.subscribe(&service_key))
        .await
        .unwrap();
    assert_eq!(subscription.providers().len(), 1);

    tokio::task::block_in_place(|| redis.stop_node(None));
    let stopped = Instant::now();
    // Calls spread over several re-read periods, each of which now fails.
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let mut calls = 0;
    while stopped.elapsed() < 5 * RESYNC {
        ticks.tick().await;
        let sum = bounded("a call with Redis down", echo.add(calls, 1)).await;
        assert_eq!(
            sum.unwrap_or_else(|e| panic!(
                "call {calls} with Redis down for {:?}: {e:?}",
                stopped.elapsed()
            )),
            calls + 1
        );
        calls += 1;
    }
    eprintln!(
        "redis: {calls} calls succeeded in the {:?} after Redis stopped",
        stopped.elapsed()
    );
    assert_eq!(client.providers(), vec![server.local_addr()]);
    assert_eq!(subscription.providers().len(), 1);
    // Each of the two subscriptions (the client's and the test's) said so, once.
    assert_eq!(
        count_warnings(
            &service_key,
            "Redis unreachable; keeping the last known providers"
        ),
        2
    );
}
