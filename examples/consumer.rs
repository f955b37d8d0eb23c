//! Calls the calculator a number of times and prints one line per call.
//!
//! `cargo run --example consumer -- --registry file:///tmp/tether-registry --calls 10 --every 100`
//! finds the providers in the registry; `--addr 127.0.0.1:20880` connects to one directly.
//!
//! A failed call prints its error kind and the run goes on; the exit status is 0 once every call
//! was made, so scripts can drive this program against a provider they stop and start. Each
//! change of the connection's state is printed on a line of its own (`state: …`): the client
//! reconnects by itself when the provider goes away and comes back.

use std::time::Duration;

use clap::Parser;
use tether::{CallOptions, Client, ClientConfig, Cluster};
use tether_examples::CalculatorClient;

/// Calls `demo.Calculator` on the providers a registry lists, or on one provider.
#[derive(Debug, Parser)]
struct Args {
    /// A provider to connect to directly, bypassing the registry.
    #[arg(long)]
    addr: Option<String>,
    /// The registry to find providers in: `memory://`, `file:///dir`, `zookeeper://host:port`,
    /// `etcd://host:port`, `redis://host:port`.
    #[arg(long, default_value = "file:///tmp/tether-registry")]
    registry: String,
    /// How many calls to make.
    #[arg(long, default_value_t = 10)]
    calls: u64,
    /// Pause between calls, in milliseconds.
    #[arg(long, default_value_t = 0)]
    every: u64,
    /// Call timeout, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// Ping the provider after this long without a frame from it, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Declare the connection dead after this long without a frame, in milliseconds (default:
    /// three heartbeats).
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// The load balancer: random, weighted_random, round_robin, smooth_weighted_round_robin,
    /// hash, source_ip_hash, consistent_hash, least_active, p2c_peak_ewma.
    #[arg(long, default_value = "random")]
    balance: String,
    /// What a failed call does: failover, failfast, failsafe, forking, broadcast.
    #[arg(long, default_value = "failover")]
    cluster: String,
    /// How long a fresh provider's weight takes to grow to full, in milliseconds (the
    /// library's default is 10 minutes; the demo starts with full weights).
    #[arg(long, default_value_t = 0)]
    warmup_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_examples::init_logging();
    let args = Args::parse();
    let mut config = ClientConfig::default();
    config.timeout = Duration::from_millis(args.timeout_ms);
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.idle_timeout = args.idle_timeout_ms.map(Duration::from_millis);
    config.balance = args.balance.clone();
    config.warmup = Duration::from_millis(args.warmup_ms);
    config.cluster = Cluster::from_name(&args.cluster)
        .ok_or_else(|| anyhow::anyhow!("unknown cluster strategy `{}`", args.cluster))?;
    let builder = Client::builder().config(config);
    let client = match &args.addr {
        Some(addr) => {
            let addr = tokio::net::lookup_host(addr)
                .await?
                .next()
                .ok_or_else(|| anyhow::anyhow!("{addr} resolves to nothing"))?;
            // Lazy: the consumer may start before the provider, and keeps going while it is away.
            builder.connect_lazy(addr)?
        }
        None => {
            let registry = tether::registry::connect(&args.registry).await?;
            builder
                .discover(registry, CalculatorClient::DESCRIPTOR.key())
                .await?
        }
    };
    let mut states = client.watch_state();
    tokio::spawn(async move {
        loop {
            println!("state: {}", *states.borrow_and_update());
            if states.changed().await.is_err() {
                break;
            }
        }
    });
    // A call waits for the connection within its timeout instead of failing at once.
    let calculator = CalculatorClient::new(client)
        .with_options(CallOptions::default().with_wait_for_ready(true));
    for i in 0..args.calls {
        let n = i as i64;
        match calculator.sum(n, n).await {
            Ok(answer) => println!(
                "call {i}: add({n}, {n}) = {} from {}",
                answer.value, answer.provider
            ),
            Err(error) => println!("call {i}: error {:?}: {error}", error.kind()),
        }
        if args.every > 0 && i + 1 < args.calls {
            tokio::time::sleep(Duration::from_millis(args.every)).await;
        }
    }
    Ok(())
}
