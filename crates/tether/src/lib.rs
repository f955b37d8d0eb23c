//! tether: an RPC framework where services are Rust traits.
//!
//! A service is a trait annotated with [`#[tether::service]`](macro@service). The macro
//! generates a typed client (`FooClient`) and a server-side dispatcher (`FooServer`); a
//! [`Server`] runs dispatchers, a [`Client`] calls them over one multiplexed TCP connection per
//! provider, speaking a compact binary protocol with the body in a [`Serialization`] chosen at
//! run time.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub enum CalcError {
//!     DivideByZero,
//! }
//!
//! #[tether::service(name = "demo.Calculator", version = "1.0.0")]
//! pub trait Calculator {
//!     async fn add(&self, a: i64, b: i64) -> i64;
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
//! }
//!
//! struct Calc;
//!
//! impl Calculator for Calc {
//!     async fn add(&self, a: i64, b: i64) -> i64 {
//!         a + b
//!     }
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
//!         a.checked_div(b).ok_or(CalcError::DivideByZero)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), tether::Error> {
//! let server = tether::Server::builder().serve(CalculatorServer::new(Calc)).bind("127.0.0.1:0").await?;
//! let calculator = CalculatorClient::new(tether::Client::connect(server.local_addr()).await?);
//! assert_eq!(calculator.add(1, 2).await?, 3);
//! assert!(matches!(calculator.div(1, 0).await?, Err(CalcError::DivideByZero)));
//! # Ok(()) }
//! ```
//!
//! # Map of the crate
//!
//! Imports run one way, from the public face down to the wire:
//!
//! - [`Client`], [`GenericClient`], [`Server`]: the public entry points (`client/`, `server/`).
//! - `transport/`: the multiplexed client connection, the server's accept loop and connection
//!   tasks, and the batching writer both share.
//! - [`protocol`]: the wire format alone (header, metadata, codec, status), no sockets.
//! - [`Serialization`] (`serialize/`): body formats, one file each.
//!
//! `docs/architecture.md` and `docs/protocol.md` in the repository hold the full picture.

pub mod balance;
mod client;
mod cluster;
mod config;
mod error;
pub mod protocol;
pub mod registry;
mod serialize;
mod server;
mod service;
mod transport;

pub use client::{CallOptions, Client, ClientBuilder, GenericClient};
pub use config::{Backoff, ClientConfig, Cluster, Eviction, ServerConfig};
pub use error::{Error, ErrorKind};
#[cfg(feature = "bincode")]
pub use serialize::Bincode;
#[cfg(feature = "cbor")]
pub use serialize::Cbor;
#[cfg(feature = "msgpack")]
pub use serialize::MessagePack;
#[cfg(feature = "postcard")]
pub use serialize::Postcard;
pub use serialize::{Json, Serialization, SerializationError, Serializer};
pub use server::{Server, ServerBuilder};
pub use service::{MethodDescriptor, ServiceDescriptor, ServiceKey};
/// Turns a trait into a service: see the crate documentation.
pub use tether_macros::service;
pub use transport::ConnectionState;

/// What generated code reaches; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use serde;

    pub use crate::client::Stub;
    pub use crate::server::{Call, DispatchError, ServiceDispatch};
    pub use crate::service::{MethodDescriptor, ServiceDescriptor};

    /// The hash balancers' key for the arguments a method names in `#[hash_key(..)]`: their JSON,
    /// hashed with [`stable_hash`](crate::balance::stable_hash), so every process agrees.
    pub fn hash_key<T: serde::Serialize + ?Sized>(arguments: &T) -> u64 {
        crate::balance::stable_hash(&serde_json::to_vec(arguments).unwrap_or_default())
    }
}
