//! A provider and a consumer in one process: start a server, connect, call.
//!
//! Run it with `cargo run --release --example quickstart`.

use serde_json::json;
use tether::{Client, GenericClient, Server, ServiceKey};
use tether_examples::{Calc, CalculatorClient, CalculatorServer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tether_examples::init_logging();

    // An in-process registry; `file:///dir` would share it between the processes of a machine,
    // `zookeeper://`, `etcd://` or `redis://` between machines.
    let registry = tether::registry::connect("memory://quickstart").await?;

    // The provider: serve the calculator on a port the OS picks, and announce it.
    let server = Server::builder()
        .serve(CalculatorServer::new(Calc::at("quickstart")))
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await?;
    println!("provider listening on {}", server.local_addr());

    // The consumer: finds the provider in the registry and calls it with typed calls.
    let client = Client::builder()
        .discover(registry, CalculatorClient::DESCRIPTOR.key())
        .await?;
    println!("providers found: {:?}", client.providers());
    let calculator = CalculatorClient::new(client.clone());
    println!("add(40, 2)  = {}", calculator.add(40, 2).await?);
    println!("div(84, 2)  = {:?}", calculator.div(84, 2).await?);
    println!("div(1, 0)   = {:?}", calculator.div(1, 0).await?);
    calculator
        .log("hello from the quickstart".to_owned())
        .await?;

    // Many calls at once share the one connection.
    let sums = futures_util::future::try_join_all((0..1000).map(|i| calculator.add(i, i))).await?;
    println!("1000 concurrent adds, last = {}", sums[999]);

    // The same service without generated types, as the command line calls it.
    let generic = GenericClient::new(
        client,
        ServiceKey::new("demo.Calculator").with_version("1.0.0"),
    )?;
    println!(
        "generic add = {}",
        generic.call("add", json!({"a": 1, "b": 2})).await?
    );
    match generic.call("sqrt", json!([4])).await {
        Ok(value) => println!("sqrt = {value}"),
        Err(error) => println!("sqrt failed as it should: {error}"),
    }
    println!("calls answered: {}", calculator.calls().await?);

    server.shutdown().await;
    Ok(())
}
