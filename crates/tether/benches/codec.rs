//! The frame codec alone, with no sockets: encoding a request frame (header, metadata entries for
//! service, method and timeout, and a 128 B or 4 KiB body) and decoding it with [`FrameCodec`].
//!
//! Encoding runs two ways, both into one reused `BytesMut`: in place with [`FrameBuilder`] and
//! [`Metadata::encode`], as the transport writes a call, and through [`FrameCodec`]'s `Encoder`
//! from a [`Frame`] whose metadata and body are already in buffers. The transport itself writes
//! the service entries from bytes it encoded once per client; that helper is not public, so the
//! in-place case encodes the whole [`Metadata`] each time.
//!
//! Decoding takes one frame, or 64 frames back to back, from a read buffer prepared outside the
//! timed part. The buffer is already shared, as a `FramedRead` buffer is after its first frame,
//! so the timings leave out the one allocation that turns a new `BytesMut` into a shared one.
//!
//! Run with `cargo bench -p tether --all-features --bench codec`; allocations per encode and per
//! decode are printed before the first group.

use std::{alloc::System, hint::black_box, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tether::{
    Serialization,
    protocol::{
        ByteString, DEFAULT_MAX_FRAME_LENGTH, Frame, FrameBuilder, FrameCodec, FrameKind, Header,
        Metadata,
    },
};
use tokio_util::codec::{Decoder, Encoder};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Body sizes, in bytes.
const SIZES: [usize; 2] = [128, 4096];
/// Frames in the back-to-back case.
const BATCH: usize = 64;
/// Operations per allocation count.
const COUNTED: usize = 1000;

fn header() -> Header {
    let mut header = Header::new(FrameKind::Request, 1);
    header.serialization = Serialization::default();
    header
}

/// Service, method and timeout, as a call carries them.
fn metadata() -> Metadata {
    let mut metadata = Metadata::default();
    metadata.service = Some(ByteString::from_static("bench.Echo"));
    metadata.method = Some(ByteString::from_static("echo"));
    metadata.timeout = Some(Duration::from_secs(5));
    metadata
}

fn body(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 256) as u8).collect()
}

/// Appends one request frame in place, as the transport does.
fn encode_in_place(buf: &mut BytesMut, header: &Header, metadata: &Metadata, body: &[u8]) {
    let mut frame = FrameBuilder::begin(buf, header);
    metadata.encode(buf).unwrap();
    frame.begin_body(buf);
    buf.put_slice(body);
    frame.finish(buf, DEFAULT_MAX_FRAME_LENGTH).unwrap();
}

/// A frame with its metadata and body already in buffers, for the `Encoder`.
fn frame(len: usize) -> Frame {
    let mut metadata_buf = BytesMut::new();
    metadata().encode(&mut metadata_buf).unwrap();
    Frame {
        header: header(),
        metadata: metadata_buf.freeze(),
        body: body(len),
    }
}

/// `count` copies of the request frame, back to back.
fn wire(len: usize, count: usize) -> Bytes {
    let mut buf = BytesMut::new();
    let body = body(len);
    for _ in 0..count {
        encode_in_place(&mut buf, &header(), &metadata(), &body);
    }
    buf.freeze()
}

/// A read buffer holding `wire`, already in the shared state a `FramedRead` buffer is in once it
/// has handed out a frame.
fn read_buffer(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(wire.len());
    buf.put_slice(wire);
    drop(buf.split_to(0));
    buf
}

fn decode_all(codec: &mut FrameCodec, buf: &mut BytesMut, frames: &mut Vec<Frame>) {
    while let Some(frame) = codec.decode(buf).unwrap() {
        frames.push(frame);
    }
}

/// Allocations and bytes allocated per operation over `COUNTED` runs of `op`; `setup` runs
/// outside the count, and what `op` returns is dropped outside it too.
fn per_op<I, O>(mut setup: impl FnMut() -> I, mut op: impl FnMut(I) -> O) -> (f64, f64) {
    let inputs: Vec<I> = (0..COUNTED).map(|_| setup()).collect();
    let mut outputs = Vec::with_capacity(COUNTED);
    let region = Region::new(GLOBAL);
    for input in inputs {
        outputs.push(op(input));
    }
    let change = region.change();
    drop(outputs);
    let n = COUNTED as f64;
    (
        (change.allocations + change.reallocations) as f64 / n,
        change.bytes_allocated as f64 / n,
    )
}

fn print_line(what: &str, (allocations, bytes): (f64, f64)) {
    println!("{what}: {allocations:.2} (bytes {bytes:.1})");
}

fn print_allocations(_: &mut Criterion) {
    for len in SIZES {
        let (header, metadata, body) = (header(), metadata(), body(len));
        let mut buf = BytesMut::with_capacity(2 * wire(len, 1).len());
        print_line(
            &format!("allocations per encode (in place, {len} B)"),
            per_op(
                || (),
                |()| {
                    buf.clear();
                    encode_in_place(&mut buf, &header, &metadata, &body);
                },
            ),
        );
        let frame = frame(len);
        let mut codec = FrameCodec::new();
        print_line(
            &format!("allocations per encode (Encoder, {len} B)"),
            per_op(
                || (),
                |()| {
                    buf.clear();
                    codec.encode(&frame, &mut buf).unwrap();
                },
            ),
        );

        let one = wire(len, 1);
        print_line(
            &format!("allocations per decode (1 frame, {len} B)"),
            per_op(
                || read_buffer(&one),
                |mut buf| codec.decode(&mut buf).unwrap().unwrap(),
            ),
        );
        print_line(
            &format!("allocations per decode (1 frame, {len} B, new unshared buffer)"),
            per_op(
                || BytesMut::from(&one[..]),
                |mut buf| codec.decode(&mut buf).unwrap().unwrap(),
            ),
        );
        let many = wire(len, BATCH);
        let (allocations, bytes) = per_op(
            || (read_buffer(&many), Vec::with_capacity(BATCH)),
            |(mut buf, mut frames)| {
                decode_all(&mut codec, &mut buf, &mut frames);
                frames
            },
        );
        let frames = BATCH as f64;
        print_line(
            &format!("allocations per decode ({BATCH} frames, {len} B, per frame)"),
            (allocations / frames, bytes / frames),
        );
        let decoded = codec.decode(&mut read_buffer(&one)).unwrap().unwrap();
        print_line(
            &format!("allocations per metadata decode ({len} B)"),
            per_op(|| (), |()| decoded.decode_metadata().unwrap()),
        );
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for len in SIZES {
        let wire_len = wire(len, 1).len();
        group.throughput(Throughput::Bytes(wire_len as u64));
        let mut buf = BytesMut::with_capacity(2 * wire_len);

        let (header, metadata, body) = (header(), metadata(), body(len));
        group.bench_function(BenchmarkId::new("in_place", len), |b| {
            b.iter(|| {
                buf.clear();
                encode_in_place(
                    &mut buf,
                    black_box(&header),
                    black_box(&metadata),
                    black_box(&body),
                );
                black_box(&buf);
            })
        });

        let frame = frame(len);
        let mut codec = FrameCodec::new();
        group.bench_function(BenchmarkId::new("encoder", len), |b| {
            b.iter(|| {
                buf.clear();
                codec.encode(black_box(&frame), &mut buf).unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let mut codec = FrameCodec::new();
    for len in SIZES {
        let one = wire(len, 1);
        let decoded = codec.decode(&mut read_buffer(&one)).unwrap().unwrap();
        assert_eq!(decoded.body, body(len));
        assert_eq!(decoded.decode_metadata().unwrap(), metadata());

        group.throughput(Throughput::Bytes(one.len() as u64));
        group.bench_function(BenchmarkId::new("one_frame", len), |b| {
            b.iter_batched(
                || read_buffer(&one),
                |mut buf| codec.decode(&mut buf).unwrap().unwrap(),
                BatchSize::SmallInput,
            )
        });

        group.throughput(Throughput::Bytes(decoded.metadata.len() as u64));
        group.bench_function(BenchmarkId::new("metadata", len), |b| {
            b.iter(|| black_box(&decoded).decode_metadata().unwrap())
        });

        let many = wire(len, BATCH);
        let mut frames = Vec::with_capacity(BATCH);
        decode_all(&mut codec, &mut read_buffer(&many), &mut frames);
        assert_eq!(frames.len(), BATCH);

        group.throughput(Throughput::Bytes(many.len() as u64));
        group.bench_function(BenchmarkId::new(format!("{BATCH}_frames"), len), |b| {
            b.iter_batched(
                || (read_buffer(&many), Vec::with_capacity(BATCH)),
                |(mut buf, mut frames)| {
                    decode_all(&mut codec, &mut buf, &mut frames);
                    frames
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, print_allocations, encode, decode);
criterion_main!(benches);
