//! tether with its default settings; the client picks the body format, and the server answers
//! in whichever format a request comes in.

use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use tether::{Client, Serialization, Server};
use tokio::net::TcpListener;

/// The echo service every stack serves.
#[tether::service(name = "bench.Echo", version = "1.0.0")]
pub(crate) trait Echo {
    /// Returns `payload`.
    async fn echo(&self, payload: Bytes) -> Bytes;
}

/// The echo service's implementation.
pub(crate) struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: Bytes) -> Bytes {
        payload
    }
}

pub(super) async fn serve(listener: TcpListener) -> Result<()> {
    let _server = Server::builder()
        .serve(EchoServer::new(Echoer))
        .listen(listener)
        .await?;
    std::future::pending().await
}

pub(super) type Caller = EchoClient;

pub(super) async fn connect(addr: SocketAddr, format: Serialization) -> Result<Caller> {
    let client = Client::builder()
        .serialization(format)
        .connect(addr)
        .await?;
    Ok(EchoClient::new(client))
}

impl super::Caller for Caller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes> {
        Ok(self.echo(payload).await?)
    }
}
