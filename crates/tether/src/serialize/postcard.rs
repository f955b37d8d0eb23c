use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// postcard: compact, variable-length integers, no field names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Serializer for Postcard {
    const SERIALIZATION: Serialization = Serialization::Postcard;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        postcard::to_io(value, dst.writer())
            .map(drop)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        let (value, rest) = postcard::take_from_bytes(src)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))?;
        super::no_trailing_bytes(Self::SERIALIZATION, rest.len())?;
        Ok(value)
    }
}
