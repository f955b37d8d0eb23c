use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// MessagePack via rmp-serde; structs travel as arrays (rmp-serde's default), and decoding
/// accepts maps too.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

impl Serializer for MessagePack {
    const SERIALIZATION: Serialization = Serialization::MessagePack;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        rmp_serde::encode::write(&mut dst.writer(), value)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        let mut deserializer = rmp_serde::Deserializer::new(std::io::Cursor::new(src));
        let value = T::deserialize(&mut deserializer)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))?;
        super::no_trailing_bytes(
            Self::SERIALIZATION,
            src.len() - deserializer.position() as usize,
        )?;
        Ok(value)
    }
}
