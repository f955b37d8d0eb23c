use bytes::BytesMut;
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// bincode 2 with its standard configuration (little-endian, variable-length integers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Appends straight to the buffer through bincode's own writer trait: going through
/// `std::io::Write` costs a few nanoseconds per call, and bincode makes a call per field.
struct Append<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for Append<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl Serializer for Bincode {
    const SERIALIZATION: Serialization = Serialization::Bincode;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        bincode::serde::encode_into_writer(value, Append(dst), CONFIG)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        let (value, read) = bincode::serde::decode_from_slice(src, CONFIG)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))?;
        super::no_trailing_bytes(Self::SERIALIZATION, src.len() - read)?;
        Ok(value)
    }
}
