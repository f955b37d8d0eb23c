//! Feeds arbitrary bytes, cut in two at a point the input chooses, to the frame decoder, and
//! decodes the metadata of every frame it returns.
//!
//! Beyond "no panic", it checks what the protocol promises: the buffer never grows past what
//! the input and one maximum-size frame need, no frame exceeds the maximum, and metadata that
//! decodes encodes again to the same value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tether::protocol::{Frame, FrameCodec, HEADER_LEN, Metadata};
use tokio_util::codec::Decoder;

/// Small enough that the fuzzer reaches the length check with short inputs.
const MAX_FRAME_LENGTH: usize = 64 * 1024;

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose where the rest is cut.
    let [a, b, data @ ..] = input else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([*a, *b])) % (data.len() + 1);
    let mut codec = FrameCodec::builder()
        .max_frame_length(MAX_FRAME_LENGTH)
        .build();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let result = codec.decode(&mut buf);
            // A `Vec` grows by doubling, so twice what the bytes fed and one frame need.
            let bound = 2 * (fed + MAX_FRAME_LENGTH + HEADER_LEN);
            assert!(buf.capacity() <= bound, "buffer grew to {}", buf.capacity());
            match result {
                Ok(Some(frame)) => check(&frame),
                Ok(None) => break,
                // The connection would close here; nothing more is read.
                Err(_) => return,
            }
        }
    }
});

fn check(frame: &Frame) {
    assert!(frame.metadata.len() + frame.body.len() <= MAX_FRAME_LENGTH);
    assert_eq!(frame.header.metadata_len as usize, frame.metadata.len());
    assert_eq!(frame.header.body_len as usize, frame.body.len());
    if let Ok(metadata) = frame.decode_metadata() {
        let mut encoded = BytesMut::new();
        metadata
            .encode(&mut encoded)
            .expect("metadata that decoded fits its entries");
        assert_eq!(Metadata::decode(&encoded.freeze()), Ok(metadata));
    }
}
