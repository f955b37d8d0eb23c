use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// JSON, via serde_json. Always enabled: generic calls and the command line speak it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Serializer for Json {
    const SERIALIZATION: Serialization = Serialization::Json;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        serde_json::to_writer(dst.writer(), value)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        serde_json::from_slice(src).map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }
}
