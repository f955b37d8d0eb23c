//! Serves the calculator until interrupted.
//!
//! `cargo run --example provider -- --addr 127.0.0.1:20880`

use clap::Parser;
use tether::{Server, ServerConfig};
use tether_examples::{Calc, CalculatorServer};

/// Serves `demo.Calculator` version 1.0.0.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:20880")]
    addr: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_examples::init_logging();
    let args = Args::parse();
    let server = Server::builder()
        .config(ServerConfig::default())
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
