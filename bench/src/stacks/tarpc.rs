//! tarpc over its serde transport with bincode, set up as tarpc's README and examples do.
//!
//! tarpc 0.37 never sets TCP_NODELAY: `serde_transport::tcp::{connect, listen_on}` wrap the
//! socket as it comes (src/serde_transport.rs:183-235), so by default Nagle's algorithm is on.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tarpc::{
    client, context,
    serde_transport::{self, tcp},
    server::{BaseChannel, Channel as _},
    tokio_serde::formats::Bincode,
    tokio_util::codec::{Framed, LengthDelimitedCodec},
};
use tokio::net::{TcpListener, TcpStream};

/// How long a call may take before tarpc gives up on it. The default context allows 10 s; a
/// loaded run must never hit the deadline, so calls get this instead.
const DEADLINE: Duration = Duration::from_secs(30);

// `Bytes` serializes as one byte string (the `serde` feature of `bytes`), not as a sequence.
#[tarpc::service]
trait Echo {
    /// Returns `payload` unchanged.
    async fn echo(payload: Bytes) -> Bytes;
}

#[derive(Clone)]
struct EchoService;

impl Echo for EchoService {
    async fn echo(self, _: context::Context, payload: Bytes) -> Bytes {
        payload
    }
}

/// Serves every connection on `listener` with default channel settings. The server's defaults
/// do not limit calls in flight: `server::Config::pending_response_buffer` (100) only bounds the
/// queue of finished responses, and no `max_concurrent_requests` limit applies unless asked for.
pub(super) async fn serve(listener: TcpListener, nodelay: bool) -> Result<()> {
    if nodelay {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            // The framing `tcp::listen_on` uses; only TCP_NODELAY differs.
            let framed = Framed::new(stream, LengthDelimitedCodec::new());
            spawn_channel(serde_transport::new(framed, Bincode::default()));
        }
    } else {
        // tarpc's own listener over an already bound socket, with its default framing.
        let mut incoming = tcp::listen_on(listener, Bincode::default).await?;
        while let Some(transport) = incoming.next().await {
            spawn_channel(transport?);
        }
        Ok(())
    }
}

/// Runs one connection's channel as tarpc's README does: each request on its own task.
fn spawn_channel<T>(transport: T)
where
    T: tarpc::Transport<tarpc::Response<EchoResponse>, tarpc::ClientMessage<EchoRequest>>
        + Send
        + 'static,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    let channel = BaseChannel::with_defaults(transport);
    tokio::spawn(
        channel
            .execute(EchoService.serve())
            .for_each(|response| async move {
                tokio::spawn(response);
            }),
    );
}

/// One connection; clones share it through tarpc's request dispatch task.
#[derive(Clone)]
pub(super) struct Caller {
    client: EchoClient,
}

/// Connects with the default client config. Its limits are above the 256 calls the load
/// generator can have in flight: `max_in_flight_requests` is 1000, and `pending_request_buffer`
/// (100) only bounds the queue of calls waiting for the dispatch task (src/client.rs:49-56).
pub(super) async fn connect(addr: SocketAddr, nodelay: bool) -> Result<Caller> {
    let transport = if nodelay {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        // The framing `tcp::connect` uses; only TCP_NODELAY differs.
        let framed = Framed::new(stream, LengthDelimitedCodec::new());
        serde_transport::new(framed, Bincode::default())
    } else {
        tcp::connect(addr, Bincode::default).await?
    };
    let client = EchoClient::new(client::Config::default(), transport).spawn();
    Ok(Caller { client })
}

impl super::Caller for Caller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes> {
        let mut context = context::current();
        context.deadline = Instant::now() + DEADLINE;
        Ok(self.client.echo(context, payload).await?)
    }
}
