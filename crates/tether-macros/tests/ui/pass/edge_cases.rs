//! What a user may reasonably write: default bodies, supertraits, `pub(crate)` in a module, raw
//! identifiers, a user type called `S`, two services in one module.
#![deny(warnings)]

mod services {
    use serde::{Deserialize, Serialize};

    /// Called `S` on purpose: the server's type parameter must not shadow it.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct S(pub u32);

    pub trait Named {
        fn label(&self) -> &'static str;
    }

    #[tether::service(name = "edge.Counter")]
    pub(crate) trait Counter: Named {
        /// With a default body, which mutates an argument.
        async fn bump(&self, mut value: S) -> S {
            value.0 += 1;
            value
        }
        async fn r#type(&self, r#in: String) -> String;
        #[oneway]
        #[idempotent]
        async fn forget(&self, _unused: u8) {}
    }

    #[tether::service(name = "edge.Second")]
    pub(crate) trait Second {
        async fn same_method_names(&self, value: S) -> S;
    }
}

use services::{Counter, CounterClient, CounterServer, Named, S, Second, SecondServer};

struct Impl;

impl Named for Impl {
    fn label(&self) -> &'static str {
        "impl"
    }
}

impl Counter for Impl {
    async fn r#type(&self, r#in: String) -> String {
        r#in
    }
}

impl Second for Impl {
    async fn same_method_names(&self, value: S) -> S {
        value
    }
}

async fn call(client: CounterClient) -> Result<(), tether::Error> {
    let S(bumped) = client.bump(S(1)).await?;
    let typed: String = client.r#type("x".to_owned()).await?;
    client.forget(0).await?;
    let _ = (bumped, typed);
    Ok(())
}

fn main() {
    let _counter = CounterServer::new(Impl);
    let _second = SecondServer::new(Impl);
    let names: Vec<_> = CounterClient::DESCRIPTOR.methods().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["bump", "type", "forget"]);
    let forget = &CounterClient::DESCRIPTOR.methods()[2];
    assert!(forget.is_oneway() && forget.is_idempotent());

    // The default body runs as an `async fn` would.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(Impl.bump(S(41))).0, 42);
    assert_eq!(Impl.label(), "impl");
    let _ = call;
}
