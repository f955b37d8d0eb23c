//! Calls the calculator a number of times and prints one line per call.
//!
//! `cargo run --example consumer -- --addr 127.0.0.1:20880 --calls 10 --every 100`
//!
//! A failed call prints its error kind and the run goes on; the exit status is 0 once every call
//! was made, so scripts can drive this program against a provider they stop and start.

use std::time::Duration;

use clap::Parser;
use tether::Client;
use tether_examples::CalculatorClient;

/// Calls `demo.Calculator` on one provider.
#[derive(Debug, Parser)]
struct Args {
    /// The provider's address.
    #[arg(long, default_value = "127.0.0.1:20880")]
    addr: String,
    /// How many calls to make.
    #[arg(long, default_value_t = 10)]
    calls: u64,
    /// Pause between calls, in milliseconds.
    #[arg(long, default_value_t = 0)]
    every: u64,
    /// Call timeout, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_examples::init_logging();
    let args = Args::parse();
    let client = Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .connect(&args.addr)
        .await?;
    let calculator = CalculatorClient::new(client);
    for i in 0..args.calls {
        let n = i as i64;
        match calculator.add(n, n).await {
            Ok(sum) => println!("call {i}: add({n}, {n}) = {sum}"),
            Err(error) => println!("call {i}: error {:?}: {error}", error.kind()),
        }
        if args.every > 0 && i + 1 < args.calls {
            tokio::time::sleep(Duration::from_millis(args.every)).await;
        }
    }
    Ok(())
}
