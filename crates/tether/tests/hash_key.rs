//! `#[hash_key(..)]`: the arguments a method names key the hash balancers, so calls for the same
//! key reach the same provider, whatever the other arguments.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use tether::{Client, ClientConfig, Server};

use support::bounded;

#[tether::service(name = "test.Sessions")]
trait Sessions {
    /// Which provider serves `user`; `nonce` must not change the answer.
    #[hash_key(user)]
    async fn home(&self, user: String, nonce: u64) -> String;
}

struct Named(String);

impl Sessions for Named {
    async fn home(&self, _user: String, _nonce: u64) -> String {
        self.0.clone()
    }
}

async fn provider(name: &str) -> Server {
    let server = Server::builder()
        .serve(SessionsServer::new(Named(name.to_owned())))
        .bind("127.0.0.1:0");
    bounded("binding", server).await.expect("binds")
}

#[tokio::test]
async fn calls_with_the_same_key_reach_the_same_provider() {
    let (a, b, c) = (
        provider("a").await,
        provider("b").await,
        provider("c").await,
    );
    let mut config = ClientConfig::default();
    config.balance = "consistent_hash".to_owned();
    config.eager = true;
    let addrs = [a.local_addr(), b.local_addr(), c.local_addr()];
    let connect = Client::builder().config(config).connect_all(addrs);
    let client = SessionsClient::new(bounded("connecting", connect).await.expect("connects"));

    let mut homes = BTreeMap::new();
    for user in 0..60 {
        let user = format!("user-{user}");
        for nonce in 0..5 {
            let home = bounded("a call", client.home(user.clone(), nonce))
                .await
                .expect("call");
            let first = homes.entry(user.clone()).or_insert_with(|| home.clone());
            assert_eq!(*first, home, "{user} moved with nonce {nonce}");
        }
    }
    let used: BTreeSet<_> = homes.values().collect();
    assert_eq!(
        used.len(),
        3,
        "60 users spread over every provider: {homes:?}"
    );
}
