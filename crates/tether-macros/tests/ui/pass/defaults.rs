//! No attribute arguments: the service is called by the trait's name, with empty version and
//! group. A private trait gives a private client and server.
#![deny(warnings)]

#[tether::service]
trait Greeter {
    async fn greet(&self, name: String) -> String;
}

struct English;

impl Greeter for English {
    async fn greet(&self, name: String) -> String {
        format!("Hello, {name}!")
    }
}

async fn greet(client: &GreeterClient) -> Result<String, tether::Error> {
    client.greet("world".to_owned()).await
}

fn main() {
    let descriptor = GreeterClient::DESCRIPTOR;
    assert_eq!(descriptor.name(), "Greeter");
    assert_eq!(descriptor.version(), "");
    assert_eq!(descriptor.group(), "");
    let _server: GreeterServer<English> = GreeterServer::new(English);
    let _ = greet;
}
