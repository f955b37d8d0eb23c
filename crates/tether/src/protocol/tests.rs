//! Tests of the protocol as a whole: the worked examples in `docs/protocol.md`, checked byte for
//! byte against what this crate writes, and property tests of the codec and the metadata section.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::{collection::vec, option, prelude::*, sample::Index};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    CodecError, Flags, Frame, FrameBuilder, FrameCodec, FrameKind, HEADER_LEN, Header, Metadata,
    MetadataError, MetadataTag, Status,
};
use crate::Serialization;

// ---------------------------------------------------------------------------------------------
// The worked examples of docs/protocol.md.
// ---------------------------------------------------------------------------------------------

/// The page the examples are read from, so the page and the code cannot drift apart.
const PROTOCOL_MD: &str = include_str!("../../../../docs/protocol.md");

/// The fenced block after `<!-- {kind}: {name} -->` in the page.
fn doc_block(kind: &str, name: &str) -> &'static str {
    let marker = format!("<!-- {kind}: {name} -->");
    let (_, after) = PROTOCOL_MD
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/protocol.md has no {marker}"));
    let after = after.trim_start();
    assert!(
        after.starts_with("```"),
        "no fenced block right after {marker}"
    );
    after
        .split("```")
        .nth(1)
        .unwrap_or_else(|| panic!("unclosed block after {marker}"))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|byte| {
            u8::from_str_radix(byte, 16).unwrap_or_else(|_| panic!("{byte:?} is not a hex byte"))
        })
        .collect()
}

/// The bytes of the example table called `name`: each line `offset | hex bytes | meaning`.
/// Checks that every offset is the count of bytes before it, and that the dump of the same
/// name, where there is one, holds the same bytes.
fn doc_example(name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in doc_block("wire-example", name).lines() {
        let mut columns = line.split('|');
        let (Some(offset), Some(hex)) = (columns.next(), columns.next()) else {
            continue;
        };
        let Ok(offset) = offset.trim().parse::<usize>() else {
            continue; // the column titles
        };
        assert_eq!(offset, bytes.len(), "{name}: wrong offset on line {line:?}");
        bytes.extend(hex_bytes(hex));
    }
    assert!(!bytes.is_empty(), "{name}: no bytes found");
    if PROTOCOL_MD.contains(&format!("<!-- wire-dump: {name} -->")) {
        let dump = hex_bytes(doc_block("wire-dump", name));
        assert_eq!(dump, bytes, "{name}: the dump and the table differ");
    }
    bytes
}

fn encode(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::new().encode(frame, &mut buf).unwrap();
    buf
}

fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = FrameCodec::new().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "bytes left after one frame");
    frame
}

/// A frame as the codec returns it: the header's lengths are those of metadata and body.
fn with_lengths(mut frame: Frame) -> Frame {
    frame.header.metadata_len = frame.metadata.len() as u32;
    frame.header.body_len = frame.body.len() as u32;
    frame
}

/// The arguments of `demo.Calculator::add` as the generated code sees them: one struct with
/// the parameter names as fields.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivideByZero,
}

fn add_metadata() -> Metadata {
    Metadata {
        service: Some("demo.Calculator".into()),
        version: Some("1.0.0".into()),
        method: Some("add".into()),
        timeout: Some(Duration::from_millis(1500)),
        ..Metadata::default()
    }
}

#[test]
fn doc_request_example_is_what_the_crate_writes() {
    let mut metadata = BytesMut::new();
    add_metadata().encode(&mut metadata).unwrap();
    let mut header = Header::new(FrameKind::Request, 1);
    header.serialization = Serialization::Json;
    let frame = with_lengths(Frame {
        header,
        metadata: metadata.freeze(),
        body: Bytes::from_static(b"[1,2]"),
    });
    let expected = doc_example("request");
    assert_eq!(&encode(&frame)[..], &expected[..]);

    // The transport's in-place path writes the same bytes.
    let mut buf = BytesMut::new();
    let mut builder = FrameBuilder::begin(&mut buf, &header);
    add_metadata().encode(&mut buf).unwrap();
    builder.begin_body(&buf);
    buf.put_slice(b"[1,2]");
    builder.finish(&mut buf, usize::MAX).unwrap();
    assert_eq!(&buf[..], &expected[..]);

    // And a reader gets back what the page says is in it.
    let decoded = decode_one(&expected);
    assert_eq!(decoded, frame);
    assert_eq!(decoded.decode_metadata().unwrap(), add_metadata());
    let args: AddArgs = Serialization::Json.deserialize(&decoded.body).unwrap();
    assert_eq!(args, AddArgs { a: 1, b: 2 });
}

#[test]
fn doc_response_example_is_what_the_crate_writes() {
    let mut body = BytesMut::new();
    Serialization::Json.serialize(&3i64, &mut body).unwrap();
    let frame = with_lengths(Frame {
        header: Header::new(FrameKind::Response, 1),
        metadata: Bytes::new(),
        body: body.freeze(),
    });
    let expected = doc_example("response");
    assert_eq!(&encode(&frame)[..], &expected[..]);
    assert_eq!(decode_one(&expected), frame);
}

#[test]
fn doc_error_response_example_is_what_the_crate_writes() {
    let mut header = Header::new(FrameKind::Response, 2);
    header.status = Status::MethodNotFound;
    let frame = with_lengths(Frame {
        header,
        metadata: Bytes::new(),
        body: Bytes::from_static(b"no method mul"),
    });
    let expected = doc_example("error-response");
    assert_eq!(&encode(&frame)[..], &expected[..]);
    assert_eq!(decode_one(&expected), frame);
}

#[test]
fn doc_ping_and_goaway_examples_are_what_the_crate_writes() {
    let ping = Frame {
        header: Header::new(FrameKind::Ping, 7),
        metadata: Bytes::new(),
        body: Bytes::new(),
    };
    assert_eq!(&encode(&ping)[..], &doc_example("ping")[..]);
    let pong = Frame {
        header: Header::new(FrameKind::Pong, 7),
        ..ping
    };
    assert_eq!(&encode(&pong)[..], &doc_example("pong")[..]);

    let goaway = with_lengths(Frame {
        header: Header::new(FrameKind::GoAway, 1),
        metadata: Bytes::new(),
        body: Bytes::from_static(b"restart"),
    });
    let expected = doc_example("goaway");
    assert_eq!(&encode(&goaway)[..], &expected[..]);
    assert_eq!(decode_one(&expected), goaway);
}

/// What the page says about argument and return value encodings, per format.
#[test]
fn doc_body_encodings_hold() {
    let hex = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let encoded = |serialization: Serialization, value: &dyn erased::Value| {
        let mut buf = BytesMut::new();
        value.serialize_into(serialization, &mut buf);
        hex(&buf)
    };
    // JSON: an object with the parameter names; a positional array is accepted too.
    assert_eq!(
        encoded(Serialization::Json, &AddArgs { a: 1, b: 2 }),
        hex(br#"{"a":1,"b":2}"#)
    );
    let positional: AddArgs = Serialization::Json.deserialize(b"[1,2]").unwrap();
    assert_eq!(positional, AddArgs { a: 1, b: 2 });
    assert_eq!(
        encoded(Serialization::Json, &Ok::<i64, CalcError>(3)),
        hex(br#"{"Ok":3}"#)
    );
    assert_eq!(
        encoded(
            Serialization::Json,
            &Err::<i64, CalcError>(CalcError::DivideByZero)
        ),
        hex(br#"{"Err":"DivideByZero"}"#)
    );

    // The table of the page: (format, args {a: 1, b: 2}, Ok(3), Err(DivideByZero)).
    let table: &[(Serialization, &str, &str, &str)] = &[
        (Serialization::Bincode, "02 04", "00 06", "01 00"),
        (Serialization::Postcard, "02 04", "00 06", "01 00"),
        (
            Serialization::MessagePack,
            "92 01 02",
            "81 a2 4f 6b 03",
            "81 a3 45 72 72 ac 44 69 76 69 64 65 42 79 5a 65 72 6f",
        ),
        (
            Serialization::Cbor,
            "a2 61 61 01 61 62 02",
            "a1 62 4f 6b 03",
            "a1 63 45 72 72 6c 44 69 76 69 64 65 42 79 5a 65 72 6f",
        ),
    ];
    for &(serialization, args, ok, err) in table {
        if !serialization.is_enabled() {
            continue;
        }
        assert_eq!(
            encoded(serialization, &AddArgs { a: 1, b: 2 }),
            args,
            "{serialization}"
        );
        assert_eq!(
            encoded(serialization, &Ok::<i64, CalcError>(3)),
            ok,
            "{serialization}"
        );
        assert_eq!(
            encoded(
                serialization,
                &Err::<i64, CalcError>(CalcError::DivideByZero)
            ),
            err,
            "{serialization}"
        );
        let back: AddArgs = serialization
            .deserialize(&hex_bytes(args))
            .expect("args decode");
        assert_eq!(back, AddArgs { a: 1, b: 2 }, "{serialization}");
    }
}

/// `Serialization::serialize` is generic; this lets the table above hold different types.
mod erased {
    use bytes::BytesMut;
    use serde::Serialize;

    use crate::Serialization;

    pub(super) trait Value {
        fn serialize_into(&self, serialization: Serialization, dst: &mut BytesMut);
    }

    impl<T: Serialize> Value for T {
        fn serialize_into(&self, serialization: Serialization, dst: &mut BytesMut) {
            serialization.serialize(self, dst).unwrap();
        }
    }
}

#[test]
fn entry_limit_is_65535_bytes() {
    let at_limit = Metadata {
        method: Some("m".repeat(65_535).into()),
        attachments: vec![("k".into(), "v".repeat(65_535 - 2 - 1).into())],
        ..Metadata::default()
    };
    let mut buf = BytesMut::new();
    at_limit.encode(&mut buf).unwrap();
    assert_eq!(Metadata::decode(&buf.freeze()).unwrap(), at_limit);

    let method_over = Metadata {
        method: Some("m".repeat(65_536).into()),
        ..Metadata::default()
    };
    let attachment_over = Metadata {
        attachments: vec![("k".into(), "v".repeat(65_535 - 2).into())],
        ..Metadata::default()
    };
    for over in [method_over, attachment_over] {
        let mut buf = BytesMut::new();
        assert!(matches!(
            over.encode(&mut buf),
            Err(MetadataError::TooLong { .. })
        ));
        assert!(buf.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------------------------

fn frame_kinds() -> Vec<FrameKind> {
    (0..=u8::MAX).filter_map(FrameKind::from_u8).collect()
}

fn statuses() -> Vec<Status> {
    (0..=u8::MAX).filter_map(Status::from_u8).collect()
}

fn header_strategy() -> impl Strategy<Value = Header> {
    (
        prop::sample::select(frame_kinds()),
        any::<u8>().prop_map(Flags::from_bits),
        prop::sample::select(Serialization::ALL.to_vec()),
        prop::sample::select(statuses()),
        any::<u64>(),
    )
        .prop_map(|(kind, flags, serialization, status, request_id)| Header {
            kind,
            flags,
            serialization,
            status,
            request_id,
            metadata_len: 0,
            body_len: 0,
        })
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    (
        header_strategy(),
        vec(any::<u8>(), 0..300),
        vec(any::<u8>(), 0..4096),
    )
        .prop_map(|(header, metadata, body)| {
            with_lengths(Frame {
                header,
                metadata: metadata.into(),
                body: body.into(),
            })
        })
}

/// Cuts `bytes` at the given points (in any order, repeats allowed).
fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut start = 0;
    cuts.into_iter()
        .map(|end| {
            let chunk = &bytes[start..end];
            start = end;
            chunk
        })
        .collect()
}

/// What a reader of a stream sees: the frames up to the first error, and that error.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<String>,
}

/// Feeds `chunks` one after the other to a fresh codec, decoding all it can after each, as
/// `FramedRead` does, and stopping at the first error. Checks the bound on the buffer's
/// growth after every decode.
fn read_stream(max_frame_length: usize, chunks: &[&[u8]]) -> Outcome {
    let mut codec = FrameCodec::builder()
        .max_frame_length(max_frame_length)
        .build();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let result = codec.decode(&mut buf);
            // The decoder reserves room for at most one frame of `max_frame_length` beyond what
            // it was given. The allocation behind `buf` holds at most every byte fed, and a
            // `Vec` grows by doubling, so its capacity stays within twice that sum; a decoder
            // that reserved the announced length (up to 8 GiB) would blow through it.
            let bound = fed
                .saturating_add(max_frame_length)
                .saturating_add(HEADER_LEN)
                .saturating_mul(2);
            assert!(
                buf.capacity() <= bound,
                "capacity {} after feeding {fed} bytes, bound {bound}",
                buf.capacity()
            );
            match result {
                Ok(Some(frame)) => {
                    assert!(frame.metadata.len() + frame.body.len() <= max_frame_length);
                    assert_eq!(frame.header.metadata_len as usize, frame.metadata.len());
                    assert_eq!(frame.header.body_len as usize, frame.body.len());
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        frames,
                        error: Some(error.to_string()),
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
    }
}

/// Byte strings a decoder may meet: noise, headers with a valid magic and arbitrary fields
/// (many announcing huge lengths), and valid frames with a few bytes changed.
fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let noise = vec(any::<u8>(), 0..2048);
    let length = prop_oneof![0u32..512, any::<u32>()];
    let header_like = (
        0u8..=6,
        any::<u8>(),
        0u8..=6,
        0u8..=9,
        any::<[u8; 9]>(),
        length.clone(),
        length,
        vec(any::<u8>(), 0..1024),
    )
        .prop_map(
            |(kind, flags, serialization, status, id_and_reserved, metadata, body, tail)| {
                let mut bytes = vec![0x54, 0x48, 1, kind, flags, serialization, status];
                bytes.extend_from_slice(&id_and_reserved);
                bytes.extend_from_slice(&metadata.to_be_bytes());
                bytes.extend_from_slice(&body.to_be_bytes());
                bytes.extend_from_slice(&tail);
                bytes
            },
        );
    let damaged_frames = (
        vec(frame_strategy(), 1..4),
        vec((any::<Index>(), any::<u8>()), 0..4),
    )
        .prop_map(|(frames, damage)| {
            let mut bytes = BytesMut::new();
            for frame in &frames {
                FrameCodec::new().encode(frame, &mut bytes).unwrap();
            }
            for (at, xor) in damage {
                let at = at.index(bytes.len());
                bytes[at] ^= xor;
            }
            bytes.to_vec()
        });
    prop_oneof![noise, header_like, damaged_frames]
}

fn metadata_string() -> impl Strategy<Value = bytestring::ByteString> {
    vec(any::<char>(), 0..40).prop_map(|chars| String::from_iter(chars).into())
}

fn metadata_strategy() -> impl Strategy<Value = Metadata> {
    (
        option::of(metadata_string()),
        option::of(metadata_string()),
        option::of(metadata_string()),
        option::of(metadata_string()),
        option::of(any::<u64>().prop_map(Duration::from_micros)),
        option::of(metadata_string()),
        option::of(metadata_string()),
        vec((metadata_string(), metadata_string()), 0..5),
    )
        .prop_map(
            |(service, version, group, method, timeout, trace_context, auth_token, attachments)| {
                Metadata {
                    service,
                    version,
                    group,
                    method,
                    timeout,
                    trace_context,
                    auth_token,
                    attachments,
                }
            },
        )
}

/// Entries with tags this version does not define, whose values are arbitrary bytes.
fn unknown_entries() -> impl Strategy<Value = Vec<u8>> {
    vec(
        (
            prop_oneof![Just(0u8), 9u8..=u8::MAX],
            vec(any::<u8>(), 0..32),
        ),
        0..4,
    )
    .prop_map(|entries| {
        let mut bytes = Vec::new();
        for (tag, value) in entries {
            bytes.push(tag);
            bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&value);
        }
        bytes
    })
}

/// Metadata sections a receiver may meet: noise, and well-formed entries with any tag (the
/// defined ones included) and arbitrary values.
fn metadata_bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    let entries = vec(
        (
            prop_oneof![1u8..=8, any::<u8>()],
            prop_oneof![
                vec(any::<u8>(), 0..24),
                any::<u64>().prop_map(|v| v.to_be_bytes().to_vec())
            ],
            0u16..3,
        ),
        0..8,
    )
    .prop_map(|entries| {
        let mut bytes = Vec::new();
        for (tag, value, extra) in entries {
            bytes.push(tag);
            // Now and then the length claims more than the value holds.
            let len = value.len() as u16 + if extra == 2 { 1 } else { 0 };
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&value);
        }
        bytes
    });
    prop_oneof![vec(any::<u8>(), 0..512), entries]
}

/// What decoding `first` then `second` as one section gives: scalars of `second` win where it
/// has them, attachments accumulate.
fn last_wins(first: &Metadata, second: &Metadata) -> Metadata {
    Metadata {
        service: second.service.clone().or_else(|| first.service.clone()),
        version: second.version.clone().or_else(|| first.version.clone()),
        group: second.group.clone().or_else(|| first.group.clone()),
        method: second.method.clone().or_else(|| first.method.clone()),
        timeout: second.timeout.or(first.timeout),
        trace_context: second
            .trace_context
            .clone()
            .or_else(|| first.trace_context.clone()),
        auth_token: second
            .auth_token
            .clone()
            .or_else(|| first.auth_token.clone()),
        attachments: first
            .attachments
            .iter()
            .chain(&second.attachments)
            .cloned()
            .collect(),
    }
}

fn encode_metadata(metadata: &Metadata) -> BytesMut {
    let mut buf = BytesMut::new();
    metadata.encode(&mut buf).unwrap();
    buf
}

proptest! {
    #[test]
    fn frames_round_trip_in_any_split(
        frames in vec(frame_strategy(), 1..4),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let mut bytes = BytesMut::new();
        let mut codec = FrameCodec::new();
        for frame in &frames {
            codec.encode(frame, &mut bytes).unwrap();
        }
        prop_assert_eq!(
            bytes.len(),
            frames.iter().map(|f| HEADER_LEN + f.metadata.len() + f.body.len()).sum::<usize>()
        );
        let outcome = read_stream(usize::MAX, &chunks(&bytes, &cuts));
        prop_assert_eq!(outcome, Outcome { frames, error: None });
    }

    #[test]
    fn the_limit_is_inclusive_both_ways(frame in frame_strategy()) {
        let len = frame.metadata.len() + frame.body.len();
        let mut exact = FrameCodec::builder().max_frame_length(len).build();
        let mut bytes = BytesMut::new();
        exact.encode(&frame, &mut bytes).unwrap();
        prop_assert_eq!(exact.decode(&mut bytes).unwrap(), Some(frame.clone()));

        if len > 0 {
            let mut short = FrameCodec::builder().max_frame_length(len - 1).build();
            let mut out = BytesMut::new();
            prop_assert!(matches!(short.encode(&frame, &mut out), Err(CodecError::TooLarge(_))));
            prop_assert!(out.is_empty());
            let mut bytes = encode(&frame);
            prop_assert!(matches!(short.decode(&mut bytes), Err(CodecError::TooLarge(_))));
        }
    }

    #[test]
    fn any_bytes_in_any_split_decode_like_the_whole(
        bytes in stream_strategy(),
        cuts in vec(any::<Index>(), 0..8),
        max_frame_length in 0usize..2048,
    ) {
        let whole = read_stream(max_frame_length, &[&bytes]);
        let split = read_stream(max_frame_length, &chunks(&bytes, &cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn metadata_round_trips(metadata in metadata_strategy()) {
        let encoded = encode_metadata(&metadata).freeze();
        prop_assert_eq!(Metadata::decode(&encoded).unwrap(), metadata);
    }

    #[test]
    fn unknown_tags_are_skipped_anywhere(
        metadata in metadata_strategy(),
        before in unknown_entries(),
        after in unknown_entries(),
    ) {
        let mut bytes = BytesMut::from(&before[..]);
        metadata.encode(&mut bytes).unwrap();
        bytes.put_slice(&after);
        prop_assert_eq!(Metadata::decode(&bytes.freeze()).unwrap(), metadata);
    }

    #[test]
    fn the_last_duplicate_wins(first in metadata_strategy(), second in metadata_strategy()) {
        let mut bytes = encode_metadata(&first);
        bytes.unsplit(encode_metadata(&second));
        prop_assert_eq!(Metadata::decode(&bytes.freeze()).unwrap(), last_wins(&first, &second));
    }

    #[test]
    fn decoding_any_metadata_bytes_never_panics(bytes in metadata_bytes_strategy()) {
        // Whatever decodes is valid metadata: it encodes again, to the same meaning.
        if let Ok(metadata) = Metadata::decode(&Bytes::from(bytes)) {
            let encoded = encode_metadata(&metadata).freeze();
            prop_assert_eq!(Metadata::decode(&encoded).unwrap(), metadata);
        }
    }
}

#[test]
fn metadata_tags_match_the_page() {
    let tags = [
        (MetadataTag::Service, 1),
        (MetadataTag::Version, 2),
        (MetadataTag::Group, 3),
        (MetadataTag::Method, 4),
        (MetadataTag::Timeout, 5),
        (MetadataTag::TraceContext, 6),
        (MetadataTag::AuthToken, 7),
        (MetadataTag::Attachment, 8),
    ];
    for (tag, code) in tags {
        assert_eq!(tag as u8, code, "{tag:?}");
    }
}
