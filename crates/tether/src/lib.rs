//! tether: an RPC framework where services are Rust traits.
#![doc(html_root_url = "https://docs.rs/tether/0.1.0")]

pub mod protocol;
mod serialize;

#[cfg(feature = "bincode")]
pub use serialize::Bincode;
#[cfg(feature = "cbor")]
pub use serialize::Cbor;
pub use serialize::Json;
#[cfg(feature = "msgpack")]
pub use serialize::MessagePack;
#[cfg(feature = "postcard")]
pub use serialize::Postcard;
pub use serialize::{Serialization, SerializationError, Serializer};
