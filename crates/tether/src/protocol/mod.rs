//! The wire format, and nothing else: no sockets, no tasks.
//!
//! A frame is a fixed 24-byte big-endian [`Header`], then `metadata_len` bytes of [`Metadata`]
//! (tag-length-value entries), then `body_len` bytes of body encoded in the frame's
//! [`Serialization`](crate::Serialization). `docs/protocol.md` holds the byte table.
//!
//! [`FrameCodec`] is a tokio-util [`Decoder`](tokio_util::codec::Decoder) and
//! [`Encoder`](tokio_util::codec::Encoder). The transport encodes its hot-path frames in place
//! with [`FrameBuilder`], so a call writes its header, metadata and body straight into the
//! connection's write buffer.

mod codec;
mod frame;
mod header;
mod metadata;
mod status;
#[cfg(test)]
mod tests;

pub use bytestring::ByteString;
pub use codec::{
    CodecError, DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameCodecBuilder, MAX_METADATA_LENGTH,
};
pub use frame::{Frame, FrameBuilder, FrameTooLarge};
pub use header::{Flags, FrameKind, HEADER_LEN, Header, MAGIC, VERSION};
pub use metadata::{Metadata, MetadataError, MetadataTag};
pub(crate) use metadata::{put_str, put_timeout};
pub use status::Status;
