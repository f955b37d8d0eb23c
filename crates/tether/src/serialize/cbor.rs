use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// CBOR via ciborium.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

impl Serializer for Cbor {
    const SERIALIZATION: Serialization = Serialization::Cbor;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        ciborium::into_writer(value, dst.writer())
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        let mut rest = src;
        let value = ciborium::from_reader(&mut rest)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))?;
        super::no_trailing_bytes(Self::SERIALIZATION, rest.len())?;
        Ok(value)
    }
}
