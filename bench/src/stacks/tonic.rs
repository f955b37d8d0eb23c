//! tonic (gRPC over HTTP/2) with prost, set up as tonic's documentation does.
//!
//! tonic 0.14 turns TCP_NODELAY on by default on both ends: `Server::tcp_nodelay` and
//! `Endpoint::tcp_nodelay` both default to true (src/transport/server/mod.rs:156,
//! src/transport/channel/endpoint.rs:126), so its documented setup is also its setup with
//! TCP_NODELAY. A channel queues up to 1024 calls for its connection
//! (`DEFAULT_BUFFER_SIZE`, src/transport/channel/mod.rs:65) and the server sets no limit on
//! concurrent HTTP/2 streams (src/transport/server/mod.rs:152), so neither caps the load.

use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};

use generated::{
    echo_client::EchoClient,
    echo_server::{Echo, EchoServer},
};

/// The client and server that `build.rs` generates for `bench.Echo/Echo`.
// The generated items are `pub` inside this private module, and their bodies are not ours.
#[allow(unreachable_pub)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/bench.Echo.rs"));
}

/// The request and the response of `bench.Echo/Echo`: protobuf field 1, bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoMessage {
    /// The bytes to echo.
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) payload: Bytes,
}

struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves on `listener` with the server builder's defaults.
pub(super) async fn serve(listener: TcpListener) -> Result<()> {
    // `Server::serve(addr)`, the documented setup, sets TCP_NODELAY on accepted sockets from
    // `Server::tcp_nodelay`, which defaults to true (src/transport/server/mod.rs:156, :680).
    // `serve_with_incoming` ignores that setting, and a `TcpIncoming` made from a listener leaves
    // the option alone, so it is applied here as `serve` applies it.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// One HTTP/2 connection; clones of the generated client share it.
#[derive(Clone)]
pub(super) struct Caller {
    client: EchoClient<Channel>,
}

/// Connects one channel with the endpoint's defaults (which set TCP_NODELAY).
pub(super) async fn connect(addr: SocketAddr) -> Result<Caller> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(Caller {
        client: EchoClient::new(channel),
    })
}

impl super::Caller for Caller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes> {
        let response = self.client.echo(EchoMessage { payload }).await?;
        Ok(response.into_inner().payload)
    }
}
