//! Serves the calculator until interrupted.
//!
//! `cargo run --example provider -- --addr 127.0.0.1:20880`

use std::time::Duration;

use clap::Parser;
use tether::{Server, ServerConfig};
use tether_examples::{Calc, CalculatorServer};

/// Serves `demo.Calculator` version 1.0.0.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:20880")]
    addr: String,
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
    let server = Server::builder()
        .config(config)
        .serve(CalculatorServer::new(Calc::default()))
        .bind(&args.addr)
        .await?;
    // Scripts wait for this line before they start consumers.
    println!("listening on {}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    server.shutdown().await;
    Ok(())
}
