use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// The tag of a metadata entry. Each entry is `tag: u8 | length: u16 | value`; a receiver skips
/// tags it does not know, and for a tag that appears twice the last one wins (attachments
/// accumulate instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum MetadataTag {
    /// Service name, UTF-8.
    Service = 1,
    /// Service version, UTF-8; absent means the empty version.
    Version = 2,
    /// Service group, UTF-8; absent means the empty group.
    Group = 3,
    /// Method name, UTF-8.
    Method = 4,
    /// Time the caller still waits for the reply, as a u64 count of microseconds; relative, so
    /// the two clocks need not agree.
    Timeout = 5,
    /// Trace context (a W3C `traceparent` value), UTF-8.
    TraceContext = 6,
    /// Authentication token, UTF-8.
    AuthToken = 7,
    /// A user attachment: `key length: u16 | key | value`, both UTF-8.
    Attachment = 8,
}

/// Why a metadata section could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// An entry claims more bytes than the section holds.
    #[error("metadata entry with tag {tag} is cut short")]
    Truncated {
        /// The entry's tag.
        tag: u8,
    },
    /// A string entry is not UTF-8.
    #[error("metadata entry with tag {tag} is not UTF-8")]
    NotUtf8 {
        /// The entry's tag.
        tag: u8,
    },
    /// A timeout entry is not 8 bytes.
    #[error("timeout entry of {len} bytes, expected 8")]
    BadTimeout {
        /// Its length.
        len: usize,
    },
    /// A value longer than an entry can hold.
    #[error("metadata value of {len} bytes exceeds the 65535-byte entry limit")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

/// The metadata section of a request: everything a server needs to route and govern a call
/// without decoding its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// Service name.
    pub service: Option<ByteString>,
    /// Service version.
    pub version: Option<ByteString>,
    /// Service group.
    pub group: Option<ByteString>,
    /// Method name.
    pub method: Option<ByteString>,
    /// How long the caller still waits, measured when the request was written.
    pub timeout: Option<Duration>,
    /// Trace context.
    pub trace_context: Option<ByteString>,
    /// Authentication token.
    pub auth_token: Option<ByteString>,
    /// User attachments, in the order they were sent.
    pub attachments: Vec<(ByteString, ByteString)>,
}

impl Metadata {
    /// Reads a metadata section. The strings share `src`'s buffer.
    pub fn decode(src: &Bytes) -> Result<Self, MetadataError> {
        let mut metadata = Metadata::default();
        let mut rest = src.clone();
        while rest.has_remaining() {
            if rest.remaining() < 3 {
                return Err(MetadataError::Truncated { tag: rest[0] });
            }
            let tag = rest.get_u8();
            let len = usize::from(rest.get_u16());
            if rest.remaining() < len {
                return Err(MetadataError::Truncated { tag });
            }
            let value = rest.split_to(len);
            let text = |value: Bytes| {
                ByteString::try_from(value).map_err(|_| MetadataError::NotUtf8 { tag })
            };
            match tag {
                1 => metadata.service = Some(text(value)?),
                2 => metadata.version = Some(text(value)?),
                3 => metadata.group = Some(text(value)?),
                4 => metadata.method = Some(text(value)?),
                5 => {
                    let micros: [u8; 8] = value[..]
                        .try_into()
                        .map_err(|_| MetadataError::BadTimeout { len })?;
                    metadata.timeout = Some(Duration::from_micros(u64::from_be_bytes(micros)));
                }
                6 => metadata.trace_context = Some(text(value)?),
                7 => metadata.auth_token = Some(text(value)?),
                8 => {
                    let mut entry = value;
                    if entry.remaining() < 2 {
                        return Err(MetadataError::Truncated { tag });
                    }
                    let key_len = usize::from(entry.get_u16());
                    if entry.remaining() < key_len {
                        return Err(MetadataError::Truncated { tag });
                    }
                    let key = text(entry.split_to(key_len))?;
                    metadata.attachments.push((key, text(entry)?));
                }
                _ => {}
            }
        }
        Ok(metadata)
    }

    /// Writes the section; fails, writing nothing, if a value is longer than an entry holds.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), MetadataError> {
        let start = dst.len();
        let result = self.encode_entries(dst);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn encode_entries(&self, dst: &mut BytesMut) -> Result<(), MetadataError> {
        let strings = [
            (MetadataTag::Service, &self.service),
            (MetadataTag::Version, &self.version),
            (MetadataTag::Group, &self.group),
            (MetadataTag::Method, &self.method),
            (MetadataTag::TraceContext, &self.trace_context),
            (MetadataTag::AuthToken, &self.auth_token),
        ];
        for (tag, value) in strings {
            if let Some(value) = value {
                put_str(dst, tag, value)?;
            }
        }
        if let Some(timeout) = self.timeout {
            put_timeout(dst, timeout);
        }
        for (key, value) in &self.attachments {
            let len = 2 + key.len() + value.len();
            let entry_len = u16::try_from(len).map_err(|_| MetadataError::TooLong { len })?;
            dst.put_u8(MetadataTag::Attachment as u8);
            dst.put_u16(entry_len);
            dst.put_u16(key.len() as u16); // bounded by `entry_len` above
            dst.put_slice(key.as_bytes());
            dst.put_slice(value.as_bytes());
        }
        Ok(())
    }
}

/// Appends one string entry.
pub(crate) fn put_str(
    dst: &mut BytesMut,
    tag: MetadataTag,
    value: &str,
) -> Result<(), MetadataError> {
    let len = value.len();
    let len16 = u16::try_from(len).map_err(|_| MetadataError::TooLong { len })?;
    dst.put_u8(tag as u8);
    dst.put_u16(len16);
    dst.put_slice(value.as_bytes());
    Ok(())
}

/// Appends the timeout entry, saturating at `u64::MAX` microseconds.
pub(crate) fn put_timeout(dst: &mut BytesMut, timeout: Duration) {
    let micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
    dst.put_u8(MetadataTag::Timeout as u8);
    dst.put_u16(8);
    dst.put_u64(micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Metadata {
        Metadata {
            service: Some("demo.Calculator".into()),
            version: Some("1.0.0".into()),
            group: Some("blue".into()),
            method: Some("add".into()),
            timeout: Some(Duration::from_millis(1500)),
            trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            auth_token: Some("secret".into()),
            attachments: vec![
                ("tenant".into(), "acme".into()),
                ("tenant".into(), "x".into()),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let mut buf = BytesMut::new();
        full().encode(&mut buf).unwrap();
        assert_eq!(Metadata::decode(&buf.freeze()).unwrap(), full());
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut buf = BytesMut::new();
        buf.put_slice(&[200, 0, 3, b'x', b'y', b'z']);
        put_str(&mut buf, MetadataTag::Method, "add").unwrap();
        let metadata = Metadata::decode(&buf.freeze()).unwrap();
        assert_eq!(metadata.method.as_deref(), Some("add"));
    }

    #[test]
    fn truncated_entry_is_an_error() {
        let buf = Bytes::from_static(&[4, 0, 10, b'a']);
        assert_eq!(
            Metadata::decode(&buf),
            Err(MetadataError::Truncated { tag: 4 })
        );
        let buf = Bytes::from_static(&[4, 0]);
        assert_eq!(
            Metadata::decode(&buf),
            Err(MetadataError::Truncated { tag: 4 })
        );
    }

    #[test]
    fn non_utf8_is_an_error() {
        let buf = Bytes::from_static(&[1, 0, 2, 0xC3, 0x28]);
        assert_eq!(
            Metadata::decode(&buf),
            Err(MetadataError::NotUtf8 { tag: 1 })
        );
    }

    #[test]
    fn too_long_value_writes_nothing() {
        let metadata = Metadata {
            method: Some("m".repeat(70_000).into()),
            ..full()
        };
        let mut buf = BytesMut::from(&b"keep"[..]);
        assert!(matches!(
            metadata.encode(&mut buf),
            Err(MetadataError::TooLong { .. })
        ));
        assert_eq!(&buf[..], b"keep");
    }
}
