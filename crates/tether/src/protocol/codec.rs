use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{Frame, FrameTooLarge, Header, frame::put_frame, header::HEADER_LEN};

/// The default bound on a frame's metadata and body together: 16 MiB.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// The bound on a frame's metadata section: 64 KiB. Metadata routes a call; it is no place for
/// payload, and a bound this size keeps one request from decoding into millions of entries.
pub const MAX_METADATA_LENGTH: usize = 64 * 1024;

/// Why bytes could not be read or written as frames. Every variant but `Io` means the peer broke
/// the protocol: the stream is no longer in step and the connection must close.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The first two bytes are not `TH`.
    #[error("bad magic {found:#06x}, expected 0x5448")]
    BadMagic {
        /// What was there instead.
        found: u16,
    },
    /// A protocol version this crate does not speak.
    #[error("unsupported protocol version {found}")]
    UnsupportedVersion {
        /// The version announced.
        found: u8,
    },
    /// A frame kind this version does not define.
    #[error("unknown frame kind {found}")]
    UnknownFrameKind {
        /// The code found.
        found: u8,
    },
    /// A serialization id this version does not define.
    #[error("unknown serialization id {found}")]
    UnknownSerialization {
        /// The id found.
        found: u8,
    },
    /// A status code this version does not define.
    #[error("unknown status {found}")]
    UnknownStatus {
        /// The code found.
        found: u8,
    },
    /// The frame announces a metadata section longer than [`MAX_METADATA_LENGTH`].
    #[error("metadata of {len} bytes exceeds the maximum of {max}")]
    MetadataTooLarge {
        /// The announced metadata length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The frame announces more bytes than the connection allows. Nothing was allocated for it.
    #[error(transparent)]
    TooLarge(#[from] FrameTooLarge),
    /// Fewer bytes than a header.
    #[error("header cut short at {len} bytes")]
    Truncated {
        /// How many bytes there were.
        len: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The tokio-util codec for tether frames.
///
/// Decoding checks the whole header (magic, version, kind, serialization, status) and the
/// announced length against the maximum before it reserves a byte for the frame, so a peer
/// cannot make it allocate more than `max_frame_length` plus one header.
///
/// ```
/// use tether::protocol::FrameCodec;
///
/// let codec = FrameCodec::builder().max_frame_length(1024 * 1024).build();
/// assert_eq!(codec.max_frame_length(), 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_length: usize,
    /// The header of the frame whose payload is still arriving.
    pending: Option<Header>,
}

impl FrameCodec {
    /// A codec with the default limits.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Settings for a codec.
    pub fn builder() -> FrameCodecBuilder {
        FrameCodecBuilder {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
        }
    }

    /// The bound on metadata and body together, in bytes.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings for a [`FrameCodec`].
#[derive(Debug, Clone, Copy)]
pub struct FrameCodecBuilder {
    max_frame_length: usize,
}

impl FrameCodecBuilder {
    /// The bound on a frame's metadata and body together, in bytes, applied to both decoding and
    /// encoding. Default: [`DEFAULT_MAX_FRAME_LENGTH`] (16 MiB). Values above `u32::MAX`, which
    /// the header's lengths cannot express, are taken as `u32::MAX`.
    pub fn max_frame_length(mut self, max: usize) -> Self {
        self.max_frame_length = max.min(u32::MAX as usize);
        self
    }

    /// The codec.
    pub fn build(self) -> FrameCodec {
        FrameCodec {
            max_frame_length: self.max_frame_length,
            pending: None,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                let header = Header::decode(&src[..HEADER_LEN])?;
                let len = header.payload_len();
                if len > self.max_frame_length as u64 {
                    return Err(FrameTooLarge {
                        len,
                        max: self.max_frame_length,
                    }
                    .into());
                }
                if header.metadata_len as usize > MAX_METADATA_LENGTH {
                    let len = header.metadata_len as usize;
                    return Err(CodecError::MetadataTooLarge {
                        len,
                        max: MAX_METADATA_LENGTH,
                    });
                }
                src.advance(HEADER_LEN);
                // Bounded by the check above: room for the rest of this frame, no more.
                src.reserve((len as usize).saturating_sub(src.len()));
                self.pending = Some(header);
                header
            }
        };
        let metadata_len = header.metadata_len as usize;
        let body_len = header.body_len as usize;
        if src.len() < metadata_len + body_len {
            return Ok(None);
        }
        self.pending = None;
        let metadata = src.split_to(metadata_len).freeze();
        let body = src.split_to(body_len).freeze();
        Ok(Some(Frame {
            header,
            metadata,
            body,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        if frame.metadata.len() > MAX_METADATA_LENGTH {
            let len = frame.metadata.len();
            return Err(CodecError::MetadataTooLarge {
                len,
                max: MAX_METADATA_LENGTH,
            });
        }
        let len = (frame.metadata.len() + frame.body.len()) as u64;
        if len > self.max_frame_length as u64 {
            return Err(FrameTooLarge {
                len,
                max: self.max_frame_length,
            }
            .into());
        }
        put_frame(dst, &frame.header, &frame.metadata, &frame.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes};

    use super::*;
    use crate::{
        Serialization,
        protocol::{Flags, FrameKind, MAGIC, Status, VERSION},
    };

    fn request(id: u64, body: &'static [u8]) -> Frame {
        let mut header = Header::new(FrameKind::Request, id);
        header.metadata_len = 3;
        header.body_len = body.len() as u32;
        Frame {
            header,
            metadata: Bytes::from_static(&[200, 0, 0]),
            body: Bytes::from_static(body),
        }
    }

    fn raw_header(patch: impl FnOnce(&mut [u8])) -> BytesMut {
        let mut buf = BytesMut::new();
        Header::new(FrameKind::Ping, 1).encode(&mut buf);
        patch(&mut buf[..]);
        buf
    }

    #[test]
    fn decodes_what_it_encodes() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        codec.encode(request(1, b"hello"), &mut buf).unwrap();
        codec.encode(request(2, b""), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(request(1, b"hello")));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(request(2, b"")));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn waits_for_a_whole_frame() {
        let mut codec = FrameCodec::new();
        let mut whole = BytesMut::new();
        codec.encode(request(9, b"payload"), &mut whole).unwrap();
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(codec.decode(&mut buf).unwrap(), None, "at byte {i}");
            buf.put_u8(*byte);
        }
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(request(9, b"payload"))
        );
    }

    #[test]
    fn rejects_bad_magic() {
        let mut buf = raw_header(|h| h[0] = b'G');
        assert!(
            matches!(FrameCodec::new().decode(&mut buf), Err(CodecError::BadMagic { found }) if found != MAGIC)
        );
    }

    #[test]
    fn rejects_unknown_version_kind_serialization_and_status() {
        let mut buf = raw_header(|h| h[2] = VERSION + 1);
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        let mut buf = raw_header(|h| h[3] = 0);
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(CodecError::UnknownFrameKind { found: 0 })
        ));
        let mut buf = raw_header(|h| h[5] = 250);
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(CodecError::UnknownSerialization { found: 250 })
        ));
        let mut buf = raw_header(|h| h[6] = 200);
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(CodecError::UnknownStatus { found: 200 })
        ));
    }

    #[test]
    fn rejects_a_4_gib_frame_before_allocating() {
        let mut buf = raw_header(|h| h[20..24].copy_from_slice(&u32::MAX.to_be_bytes()));
        let capacity = buf.capacity();
        let err = FrameCodec::new().decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, CodecError::TooLarge(FrameTooLarge { len, .. }) if len == u64::from(u32::MAX))
        );
        assert_eq!(
            buf.capacity(),
            capacity,
            "no buffer growth for a rejected frame"
        );
    }

    #[test]
    fn metadata_has_its_own_bound() {
        let mut buf = raw_header(|h| {
            h[16..20].copy_from_slice(&(MAX_METADATA_LENGTH as u32 + 1).to_be_bytes())
        });
        let capacity = buf.capacity();
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(CodecError::MetadataTooLarge { .. })
        ));
        assert_eq!(buf.capacity(), capacity);
        let big = Frame {
            metadata: Bytes::from(vec![0; MAX_METADATA_LENGTH + 1]),
            ..request(1, b"")
        };
        let mut out = BytesMut::new();
        assert!(matches!(
            FrameCodec::new().encode(big, &mut out),
            Err(CodecError::MetadataTooLarge { .. })
        ));
    }

    #[test]
    fn reserves_only_what_the_frame_still_needs() {
        let mut codec = FrameCodec::new();
        let mut whole = BytesMut::new();
        codec.encode(request(3, &[7; 1000]), &mut whole).unwrap();
        // The header and most of the payload arrive together.
        let mut buf = BytesMut::with_capacity(whole.len() - 10);
        buf.extend_from_slice(&whole[..whole.len() - 10]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(
            buf.capacity() < 2 * whole.len(),
            "capacity {}",
            buf.capacity()
        );
        buf.extend_from_slice(&whole[whole.len() - 10..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn a_limit_beyond_u32_is_clamped() {
        let codec = FrameCodec::builder().max_frame_length(usize::MAX).build();
        assert_eq!(codec.max_frame_length(), u32::MAX as usize);
    }

    #[test]
    fn the_limit_counts_metadata_and_body_together() {
        let mut codec = FrameCodec::builder().max_frame_length(10).build();
        let mut buf = raw_header(|h| {
            h[16..20].copy_from_slice(&6u32.to_be_bytes());
            h[20..24].copy_from_slice(&5u32.to_be_bytes());
        });
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::TooLarge(_))
        ));
        let mut out = BytesMut::new();
        let big = Frame {
            body: Bytes::from_static(&[0; 11]),
            ..request(1, b"")
        };
        assert!(matches!(
            codec.encode(big, &mut out),
            Err(CodecError::TooLarge(_))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn oneway_flag_and_status_survive() {
        let mut header = Header::new(FrameKind::Response, 5);
        header.flags = Flags::ONEWAY;
        header.status = Status::DeadlineExceeded;
        header.serialization = Serialization::Json;
        let frame = Frame {
            header,
            metadata: Bytes::new(),
            body: Bytes::from_static(b"late"),
        };
        let mut buf = BytesMut::new();
        let mut codec = FrameCodec::new();
        codec.encode(&frame, &mut buf).unwrap();
        let mut expected = frame;
        expected.header.body_len = 4;
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(expected));
    }
}
