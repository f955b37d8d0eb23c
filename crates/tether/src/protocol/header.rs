use bytes::{Buf, BufMut};

use super::{CodecError, Status};
use crate::Serialization;

/// The first two bytes of every frame: `TH`.
pub const MAGIC: u16 = 0x5448;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The size of the fixed header, in bytes.
pub const HEADER_LEN: usize = 24;

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A call, from client to server.
    Request = 1,
    /// The answer to a request, with the request's id.
    Response = 2,
    /// A liveness probe; either side may send one.
    Ping = 3,
    /// The answer to a Ping, with the Ping's id.
    Pong = 4,
    /// The sender takes no new requests on this connection and will close it.
    GoAway = 5,
}

impl FrameKind {
    /// The kind for a wire code, or `None` for a code this version does not define.
    pub const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Ping,
            4 => Self::Pong,
            5 => Self::GoAway,
            _ => return None,
        })
    }
}

/// The header's flag bits. Bits this version does not define are ignored on receipt and sent
/// as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// A request that wants no response.
    pub const ONEWAY: Flags = Flags(0b0000_0001);

    /// The flags for a raw byte, keeping only the bits this version defines.
    pub const fn from_bits(bits: u8) -> Self {
        Flags(bits & Self::ONEWAY.0)
    }

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The fixed 24-byte header that starts every frame. All integers are big-endian.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 2 | magic `0x5448` |
/// | 2 | 1 | version |
/// | 3 | 1 | frame kind |
/// | 4 | 1 | flags |
/// | 5 | 1 | serialization id |
/// | 6 | 1 | status |
/// | 7 | 1 | reserved, zero |
/// | 8 | 8 | request id |
/// | 16 | 4 | metadata length |
/// | 20 | 4 | body length |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame is for.
    pub kind: FrameKind,
    /// Flag bits.
    pub flags: Flags,
    /// The format of the body; a server answers in the format the request came in.
    pub serialization: Serialization,
    /// The outcome, in responses and GoAway; [`Status::Ok`] otherwise.
    pub status: Status,
    /// Matches a response to its request and a Pong to its Ping.
    pub request_id: u64,
    /// Length of the metadata section that follows the header.
    pub metadata_len: u32,
    /// Length of the body that follows the metadata.
    pub body_len: u32,
}

impl Header {
    /// A header with no metadata, no body, no flags, status Ok and JSON serialization.
    pub const fn new(kind: FrameKind, request_id: u64) -> Self {
        Self {
            kind,
            flags: Flags::NONE,
            serialization: Serialization::Json,
            status: Status::Ok,
            request_id,
            metadata_len: 0,
            body_len: 0,
        }
    }

    /// Writes the 24 header bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(MAGIC);
        dst.put_u8(VERSION);
        dst.put_u8(self.kind as u8);
        dst.put_u8(self.flags.bits());
        dst.put_u8(self.serialization.id());
        dst.put_u8(self.status.as_u8());
        dst.put_u8(0);
        dst.put_u64(self.request_id);
        dst.put_u32(self.metadata_len);
        dst.put_u32(self.body_len);
    }

    /// Reads a header from exactly [`HEADER_LEN`] bytes, checking every field this version
    /// defines. Lengths are checked against a maximum by the codec, not here.
    pub fn decode(mut src: &[u8]) -> Result<Self, CodecError> {
        if src.len() < HEADER_LEN {
            return Err(CodecError::Truncated { len: src.len() });
        }
        let magic = src.get_u16();
        if magic != MAGIC {
            return Err(CodecError::BadMagic { found: magic });
        }
        let version = src.get_u8();
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion { found: version });
        }
        let kind = src.get_u8();
        let kind = FrameKind::from_u8(kind).ok_or(CodecError::UnknownFrameKind { found: kind })?;
        let flags = Flags::from_bits(src.get_u8());
        let serialization = src.get_u8();
        let serialization =
            Serialization::from_id(serialization).ok_or(CodecError::UnknownSerialization {
                found: serialization,
            })?;
        let status = src.get_u8();
        let status = Status::from_u8(status).ok_or(CodecError::UnknownStatus { found: status })?;
        let _reserved = src.get_u8();
        Ok(Self {
            kind,
            flags,
            serialization,
            status,
            request_id: src.get_u64(),
            metadata_len: src.get_u32(),
            body_len: src.get_u32(),
        })
    }

    /// Metadata and body together, in bytes.
    pub const fn payload_len(&self) -> u64 {
        self.metadata_len as u64 + self.body_len as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_byte_table() {
        let header = Header {
            kind: FrameKind::Response,
            flags: Flags::ONEWAY,
            serialization: Serialization::Json,
            status: Status::Overloaded,
            request_id: 0x0102_0304_0506_0708,
            metadata_len: 0x0A0B_0C0D,
            body_len: 0x1112_1314,
        };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        assert_eq!(
            bytes,
            [
                0x54, 0x48, 1, 2, 1, 1, 5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D, 0x11,
                0x12, 0x13, 0x14
            ]
        );
        assert_eq!(Header::decode(&bytes).unwrap(), header);
    }

    #[test]
    fn undefined_flag_bits_are_dropped() {
        assert_eq!(Flags::from_bits(0xFF), Flags::ONEWAY);
    }
}
