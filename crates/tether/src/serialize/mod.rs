//! Body formats, chosen per frame at run time by the id in the header.
//!
//! Each format is a zero-sized type implementing [`Serializer`] in its own file, behind a cargo
//! feature of the same name (JSON is always on: generic calls and the CLI use it). The
//! [`Serialization`] enum names every format the protocol defines, enabled or not, so a frame
//! in a format this build lacks still decodes and gets a clear error instead of a dropped
//! connection.

#[cfg(feature = "bincode")]
mod bincode;
#[cfg(feature = "cbor")]
mod cbor;
mod json;
#[cfg(feature = "msgpack")]
mod msgpack;
#[cfg(feature = "postcard")]
mod postcard;

use std::fmt;

use bytes::BytesMut;
use serde::{Serialize, de::DeserializeOwned};

#[cfg(feature = "bincode")]
pub use self::bincode::Bincode;
#[cfg(feature = "cbor")]
pub use self::cbor::Cbor;
pub use self::json::Json;
#[cfg(feature = "msgpack")]
pub use self::msgpack::MessagePack;
#[cfg(feature = "postcard")]
pub use self::postcard::Postcard;

/// A body format: how values become bytes and back.
///
/// Implementations write straight into the connection's write buffer, so encoding a call
/// allocates nothing of its own.
pub trait Serializer {
    /// The id this format travels under.
    const SERIALIZATION: Serialization;

    /// Appends `value` to `dst`.
    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError>;

    /// Reads a value from the whole of `src`.
    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError>;
}

/// A body format by its wire id. Every format the protocol defines has a variant, whether or not
/// this build enables its feature; see [`Serialization::is_enabled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Serialization {
    /// JSON (serde_json), id 1. Always enabled.
    Json = 1,
    /// bincode 2 with its standard configuration, id 2. Feature `bincode`.
    Bincode = 2,
    /// MessagePack (rmp-serde, structs as arrays), id 3. Feature `msgpack`.
    MessagePack = 3,
    /// CBOR (ciborium), id 4. Feature `cbor`.
    Cbor = 4,
    /// postcard, id 5. Feature `postcard`.
    Postcard = 5,
}

impl Serialization {
    /// Every format the protocol defines.
    pub const ALL: [Serialization; 5] = [
        Self::Json,
        Self::Bincode,
        Self::MessagePack,
        Self::Cbor,
        Self::Postcard,
    ];

    /// The format for a wire id, or `None` for an id the protocol does not define.
    pub const fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            1 => Self::Json,
            2 => Self::Bincode,
            3 => Self::MessagePack,
            4 => Self::Cbor,
            5 => Self::Postcard,
            _ => return None,
        })
    }

    /// The wire id.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The name used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Bincode => "bincode",
            Self::MessagePack => "msgpack",
            Self::Cbor => "cbor",
            Self::Postcard => "postcard",
        }
    }

    /// The format with that [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Whether this build can encode and decode the format.
    pub const fn is_enabled(self) -> bool {
        match self {
            Self::Json => true,
            Self::Bincode => cfg!(feature = "bincode"),
            Self::MessagePack => cfg!(feature = "msgpack"),
            Self::Cbor => cfg!(feature = "cbor"),
            Self::Postcard => cfg!(feature = "postcard"),
        }
    }

    /// The formats this build enables.
    pub fn enabled() -> impl Iterator<Item = Serialization> {
        Self::ALL.into_iter().filter(|s| s.is_enabled())
    }

    /// Appends `value` to `dst` in this format.
    pub fn serialize<T: Serialize + ?Sized>(
        self,
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        match self {
            Self::Json => Json::serialize(value, dst),
            #[cfg(feature = "bincode")]
            Self::Bincode => Bincode::serialize(value, dst),
            #[cfg(feature = "msgpack")]
            Self::MessagePack => MessagePack::serialize(value, dst),
            #[cfg(feature = "cbor")]
            Self::Cbor => Cbor::serialize(value, dst),
            #[cfg(feature = "postcard")]
            Self::Postcard => Postcard::serialize(value, dst),
            #[allow(unreachable_patterns)]
            _ => Err(SerializationError::not_enabled(self)),
        }
    }

    /// Reads a value in this format from the whole of `src`.
    pub fn deserialize<T: DeserializeOwned>(self, src: &[u8]) -> Result<T, SerializationError> {
        match self {
            Self::Json => Json::deserialize(src),
            #[cfg(feature = "bincode")]
            Self::Bincode => Bincode::deserialize(src),
            #[cfg(feature = "msgpack")]
            Self::MessagePack => MessagePack::deserialize(src),
            #[cfg(feature = "cbor")]
            Self::Cbor => Cbor::deserialize(src),
            #[cfg(feature = "postcard")]
            Self::Postcard => Postcard::deserialize(src),
            #[allow(unreachable_patterns)]
            _ => Err(SerializationError::not_enabled(self)),
        }
    }
}

impl Default for Serialization {
    /// The fastest binary format this build enables (see `benches/serialization.rs`), or JSON
    /// when none is.
    fn default() -> Self {
        if cfg!(feature = "bincode") {
            Self::Bincode
        } else if cfg!(feature = "postcard") {
            Self::Postcard
        } else if cfg!(feature = "msgpack") {
            Self::MessagePack
        } else if cfg!(feature = "cbor") {
            Self::Cbor
        } else {
            Self::Json
        }
    }
}

impl fmt::Display for Serialization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every format decodes one value from the whole body: bytes left over mean the body is not what
/// the receiver expects, even where the format itself would stop early without complaint.
/// (JSON checks this itself, so a build with only JSON has no caller.)
#[cfg(any(
    feature = "bincode",
    feature = "msgpack",
    feature = "cbor",
    feature = "postcard"
))]
fn no_trailing_bytes(
    serialization: Serialization,
    trailing: usize,
) -> Result<(), SerializationError> {
    if trailing == 0 {
        Ok(())
    } else {
        Err(SerializationError::new(
            serialization,
            format_args!("{trailing} trailing bytes"),
        ))
    }
}

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{serialization}: {message}")]
pub struct SerializationError {
    serialization: Serialization,
    message: String,
}

impl SerializationError {
    pub(crate) fn new(serialization: Serialization, error: impl fmt::Display) -> Self {
        Self {
            serialization,
            message: error.to_string(),
        }
    }

    fn not_enabled(serialization: Serialization) -> Self {
        Self::new(serialization, "format not enabled in this build")
    }

    /// The format that failed.
    pub fn serialization(&self) -> Serialization {
        self.serialization
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<String>,
        score: Option<f64>,
        payload: Vec<u8>,
    }

    fn sample() -> Sample {
        Sample {
            id: 42,
            name: "tether".into(),
            tags: vec!["a".into(), "bc".into()],
            score: Some(0.5),
            payload: vec![1, 2, 3, 255],
        }
    }

    #[test]
    fn every_enabled_format_round_trips() {
        for serialization in Serialization::enabled() {
            let mut buf = BytesMut::from(&b"prefix"[..]);
            serialization.serialize(&sample(), &mut buf).unwrap();
            let back: Sample = serialization.deserialize(&buf[6..]).unwrap();
            assert_eq!(back, sample(), "{serialization}");
        }
    }

    #[test]
    fn trailing_bytes_are_an_error_in_every_format() {
        for serialization in Serialization::enabled() {
            let mut buf = BytesMut::new();
            serialization.serialize(&sample(), &mut buf).unwrap();
            buf.extend_from_slice(b"   x");
            let result = serialization.deserialize::<Sample>(&buf);
            assert!(result.is_err(), "{serialization} accepted trailing bytes");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for serialization in Serialization::enabled() {
            let result = serialization.deserialize::<Sample>(&[0xFF, 0x00, 0x13]);
            assert!(result.is_err(), "{serialization}");
        }
    }

    #[test]
    fn ids_and_names_round_trip() {
        for serialization in Serialization::ALL {
            assert_eq!(
                Serialization::from_id(serialization.id()),
                Some(serialization)
            );
            assert_eq!(
                Serialization::from_name(serialization.name()),
                Some(serialization)
            );
        }
        assert_eq!(Serialization::from_id(0), None);
        assert!(Serialization::default().is_enabled());
    }
}
