//! The RPC stacks under comparison. Each one serves an echo of a byte payload and hands the
//! load generator a [`Caller`] per connection; the load generator drives them all the same way.

mod raw;
mod tarpc;
mod tether;
mod tonic;

use std::{fmt, future::Future, net::SocketAddr, str::FromStr};

use anyhow::Result;
use bytes::Bytes;
use tokio::net::TcpListener;

pub(crate) use self::tether::{EchoServer, Echoer};
use crate::load::{self, Outcome, Plan};

/// One handle for calls over one connection; each worker of the load generator holds a clone.
pub(crate) trait Caller: Clone + Send + 'static {
    /// Sends `payload` and returns the echo.
    fn call(&mut self, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send + '_;
}

/// A stack as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stack {
    /// `u32 len | u64 id | payload` frames echoed by a reader and a writer task: the floor.
    Raw,
    /// tether with one serialization format, with its default settings.
    Tether(::tether::Serialization),
    /// tarpc over its serde transport with bincode; `nodelay` sets TCP_NODELAY on both ends,
    /// which its documentation's setup does not.
    Tarpc { nodelay: bool },
    /// tonic (gRPC over HTTP/2, prost), whose defaults already set TCP_NODELAY on both ends.
    Tonic,
}

impl Stack {
    /// Every stack, in the order the table lists them.
    pub(crate) fn all() -> Vec<Stack> {
        use ::tether::Serialization as S;
        vec![
            Stack::Raw,
            Stack::Tether(S::Bincode),
            Stack::Tether(S::Postcard),
            Stack::Tether(S::MessagePack),
            Stack::Tether(S::Cbor),
            Stack::Tether(S::Json),
            Stack::Tarpc { nodelay: false },
            Stack::Tarpc { nodelay: true },
            Stack::Tonic,
        ]
    }

    /// The stack's family: `raw`, `tether`, `tarpc` or `tonic`.
    pub(crate) fn family(self) -> &'static str {
        match self {
            Stack::Raw => "raw",
            Stack::Tether(_) => "tether",
            Stack::Tarpc { .. } => "tarpc",
            Stack::Tonic => "tonic",
        }
    }

    /// The body format, as the table shows it.
    pub(crate) fn format(self) -> String {
        match self {
            Stack::Raw => "bytes".to_owned(),
            Stack::Tether(serialization) => serialization.to_string(),
            Stack::Tarpc { .. } => "bincode".to_owned(),
            Stack::Tonic => "protobuf".to_owned(),
        }
    }

    /// Whether TCP_NODELAY is set on both ends.
    pub(crate) fn nodelay(self) -> bool {
        match self {
            // The raw baseline, tether and tonic (by default) always set it.
            Stack::Raw | Stack::Tether(_) | Stack::Tonic => true,
            Stack::Tarpc { nodelay } => nodelay,
        }
    }

    /// Serves the echo on `listener` until the process is killed.
    pub(crate) async fn serve(self, listener: TcpListener) -> Result<()> {
        match self {
            Stack::Raw => raw::serve(listener).await,
            Stack::Tether(_) => tether::serve(listener).await,
            Stack::Tarpc { nodelay } => tarpc::serve(listener, nodelay).await,
            Stack::Tonic => tonic::serve(listener).await,
        }
    }

    /// Opens `plan.connections` connections to `addr` and runs the load.
    pub(crate) async fn load(self, addr: SocketAddr, plan: &Plan) -> Result<Outcome> {
        match self {
            Stack::Raw => load::run(connect_all(plan, || raw::connect(addr)).await?, plan).await,
            Stack::Tether(format) => {
                let callers = connect_all(plan, || tether::connect(addr, format)).await?;
                load::run(callers, plan).await
            }
            Stack::Tarpc { nodelay } => {
                let callers = connect_all(plan, || tarpc::connect(addr, nodelay)).await?;
                load::run(callers, plan).await
            }
            Stack::Tonic => {
                load::run(connect_all(plan, || tonic::connect(addr)).await?, plan).await
            }
        }
    }
}

async fn connect_all<C, F, Fut>(plan: &Plan, connect: F) -> Result<Vec<C>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<C>>,
{
    let mut callers = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        callers.push(connect().await?);
    }
    Ok(callers)
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stack::Raw => f.write_str("raw"),
            Stack::Tether(serialization) => write!(f, "tether-{serialization}"),
            Stack::Tarpc { nodelay: false } => f.write_str("tarpc"),
            Stack::Tarpc { nodelay: true } => f.write_str("tarpc-nodelay"),
            Stack::Tonic => f.write_str("tonic"),
        }
    }
}

impl FromStr for Stack {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Stack::all()
            .into_iter()
            .find(|stack| stack.to_string() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Stack::all().iter().map(ToString::to_string).collect();
                format!("unknown stack `{name}`; one of: {}", names.join(", "))
            })
    }
}
