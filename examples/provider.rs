//! Serves the calculator until interrupted, registered in a registry.
//!
//! `cargo run --example provider -- --addr 127.0.0.1:20880 --registry file:///tmp/tether-registry`
//!
//! ZooKeeper, etcd and Redis registries need the `registries` feature:
//! `cargo run --example provider --features registries -- --registry etcd://127.0.0.1:2379`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tether::{Server, ServerConfig};
use tether_examples::{Calc, CalculatorServer};

/// Serves `demo.Calculator` version 1.0.0.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0: any free port; the line `listening on ADDR` names it).
    #[arg(long, default_value = "127.0.0.1:20880")]
    addr: String,
    /// The registry to announce the service in: `memory://`, `file:///dir`,
    /// `zookeeper://host:port`, `etcd://host:port`, `redis://host:port`; `none` for none.
    #[arg(long, default_value = "file:///tmp/tether-registry")]
    registry: String,
    /// The share of calls this provider asks for, relative to the others.
    #[arg(long, default_value_t = 100)]
    weight: u32,
    /// Ping a connection after this long without a frame from it, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Close a connection after this long without a frame from it, in milliseconds (default:
    /// three heartbeats).
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_examples::init_logging();
    let args = Args::parse();
    let mut config = ServerConfig::default();
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.idle_timeout = args.idle_timeout_ms.map(Duration::from_millis);
    config.weight = args.weight;
    // Bound first, so that the calculator names itself by the address it got (`--addr` may
    // ask for port 0).
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("cannot bind {}", args.addr))?;
    let addr = listener.local_addr()?;
    let mut builder = Server::builder()
        .config(config)
        .serve(CalculatorServer::new(Calc::at(addr.to_string())));
    if args.registry != "none" {
        builder = builder.registry(tether::registry::connect(&args.registry).await?);
    }
    let server = builder.listen(listener).await?;
    // Scripts wait for this line before they start consumers.
    println!("listening on {}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    // Deregisters first, then lets the calls in flight finish.
    println!("shutting down");
    server.shutdown().await;
    Ok(())
}
