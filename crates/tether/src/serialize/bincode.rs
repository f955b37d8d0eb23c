use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{Serialization, SerializationError, Serializer};

/// bincode 2 with its standard configuration (little-endian, variable-length integers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

impl Serializer for Bincode {
    const SERIALIZATION: Serialization = Serialization::Bincode;

    fn serialize<T: Serialize + ?Sized>(
        value: &T,
        dst: &mut BytesMut,
    ) -> Result<(), SerializationError> {
        bincode::serde::encode_into_std_write(value, &mut dst.writer(), CONFIG)
            .map(drop)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))
    }

    fn deserialize<T: DeserializeOwned>(src: &[u8]) -> Result<T, SerializationError> {
        let (value, read) = bincode::serde::decode_from_slice(src, CONFIG)
            .map_err(|e| SerializationError::new(Self::SERIALIZATION, e))?;
        if read != src.len() {
            let trailing = src.len() - read;
            return Err(SerializationError::new(
                Self::SERIALIZATION,
                format_args!("{trailing} trailing bytes"),
            ));
        }
        Ok(value)
    }
}
