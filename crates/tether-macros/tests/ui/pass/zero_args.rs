//! Methods without arguments, with and without a return value, and a service without methods.
#![deny(warnings)]

#[tether::service(name = "demo.Clock")]
pub trait Clock {
    async fn now(&self) -> u64;
    async fn tick(&self);
    #[oneway]
    async fn reset(&self);
}

#[tether::service]
pub trait Empty {}

struct Fixed;

impl Clock for Fixed {
    async fn now(&self) -> u64 {
        42
    }
    async fn tick(&self) {}
    async fn reset(&self) {}
}

struct Nothing;

impl Empty for Nothing {}

async fn call(client: ClockClient) -> Result<(), tether::Error> {
    let now: u64 = client.now().await?;
    let (): () = client.tick().await?;
    let (): () = client.reset().await?;
    let _ = now;
    Ok(())
}

fn main() {
    let _clock = ClockServer::new(Fixed);
    let _empty = EmptyServer::new(Nothing);
    assert!(EmptyClient::DESCRIPTOR.methods().is_empty());
    assert_eq!(ClockClient::DESCRIPTOR.methods().len(), 3);
    let _ = call;
}
