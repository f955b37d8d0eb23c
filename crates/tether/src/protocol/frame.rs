use bytes::{BufMut, Bytes, BytesMut};

use super::{HEADER_LEN, Header, Metadata, MetadataError};

/// One whole frame: its header, its raw metadata section and its body.
///
/// The lengths in `header` are those read off the wire; [`FrameCodec`](super::FrameCodec)
/// encodes the lengths of `metadata` and `body` instead, so they cannot disagree on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header.
    pub header: Header,
    /// The metadata section, undecoded; see [`Frame::decode_metadata`].
    pub metadata: Bytes,
    /// The body, encoded in `header.serialization`.
    pub body: Bytes,
}

impl Frame {
    /// Decodes the metadata section. Responses, pings and pongs usually have none.
    pub fn decode_metadata(&self) -> Result<Metadata, MetadataError> {
        Metadata::decode(&self.metadata)
    }
}

/// The frame would be longer than the connection allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes exceeds the maximum of {max}")]
pub struct FrameTooLarge {
    /// Metadata and body length together.
    pub len: u64,
    /// The maximum.
    pub max: usize,
}

/// Writes a frame in place at the end of a buffer: the header with blank lengths, then metadata
/// and body written by the caller straight into the buffer, then the lengths filled in.
///
/// This is how the transport encodes calls and replies: serializers write into the
/// connection's write buffer, and nothing is allocated or copied per frame.
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use tether::protocol::{FrameBuilder, FrameKind, Header};
///
/// let mut buf = BytesMut::new();
/// let mut frame = FrameBuilder::begin(&mut buf, &Header::new(FrameKind::Response, 7));
/// frame.begin_body(&buf);
/// buf.put_slice(b"42");
/// frame.finish(&mut buf, 1024).unwrap();
/// assert_eq!(buf.len(), 24 + 2);
/// ```
#[derive(Debug)]
#[must_use = "a begun frame must be finished or aborted"]
pub struct FrameBuilder {
    start: usize,
    body_start: Option<usize>,
}

impl FrameBuilder {
    /// Appends `header` (its lengths are ignored) and starts the metadata section.
    pub fn begin(dst: &mut BytesMut, header: &Header) -> Self {
        let start = dst.len();
        dst.reserve(HEADER_LEN);
        header.encode(dst);
        Self {
            start,
            body_start: None,
        }
    }

    /// Ends the metadata section: what is written from here on is the body.
    pub fn begin_body(&mut self, dst: &BytesMut) {
        self.body_start = Some(dst.len());
    }

    /// Fills in the lengths; without [`begin_body`](Self::begin_body), all that was written
    /// counts as metadata. If metadata and body exceed `max_frame_length`, removes the whole
    /// frame from `dst` and says so.
    pub fn finish(self, dst: &mut BytesMut, max_frame_length: usize) -> Result<(), FrameTooLarge> {
        let metadata_start = self.start + HEADER_LEN;
        let body_start = self.body_start.unwrap_or(dst.len());
        let metadata_len = body_start - metadata_start;
        let body_len = dst.len() - body_start;
        let len = (metadata_len + body_len) as u64;
        let too_large = FrameTooLarge {
            len,
            max: max_frame_length,
        };
        if len > max_frame_length as u64 {
            dst.truncate(self.start);
            return Err(too_large);
        }
        let (Ok(metadata_len), Ok(body_len)) =
            (u32::try_from(metadata_len), u32::try_from(body_len))
        else {
            dst.truncate(self.start);
            return Err(too_large);
        };
        let lengths = &mut dst[self.start + 16..self.start + HEADER_LEN];
        lengths[..4].copy_from_slice(&metadata_len.to_be_bytes());
        lengths[4..].copy_from_slice(&body_len.to_be_bytes());
        Ok(())
    }

    /// Removes the partly written frame from `dst`.
    pub fn abort(self, dst: &mut BytesMut) {
        dst.truncate(self.start);
    }
}

/// Appends a frame whose metadata and body are already in buffers.
pub(crate) fn put_frame(dst: &mut BytesMut, header: &Header, metadata: &[u8], body: &[u8]) {
    let header = Header {
        metadata_len: metadata.len() as u32,
        body_len: body.len() as u32,
        ..*header
    };
    dst.reserve(HEADER_LEN + metadata.len() + body.len());
    header.encode(dst);
    dst.put_slice(metadata);
    dst.put_slice(body);
}
