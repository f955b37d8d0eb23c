//! Every enabled body format on two payloads: a small struct, as most calls carry, and a struct
//! with a 4 KiB byte vector. Each format serializes into one reused `BytesMut`, as the transport
//! does, and deserializes from a slice.
//!
//! The byte vector is a plain `Vec<u8>` (no `serde_bytes`): that is what a service type holds
//! unless its author opts in, and it is the case where formats differ most (MessagePack and
//! CBOR encode it as an array of integers, one to two bytes each).
//!
//! Run with `cargo bench -p tether --all-features --bench serialization`; the encoded sizes are
//! printed before the first group.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tether::Serialization;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Small {
    id: u64,
    name: String,
    active: bool,
    score: Option<u32>,
    values: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    id: u64,
    name: String,
    data: Vec<u8>,
}

fn small() -> Small {
    Small {
        id: 1_234_567,
        name: "calculator".into(),
        active: true,
        score: Some(42),
        values: vec![7, 300, 70_000],
    }
}

fn payload() -> Payload {
    Payload {
        id: 1_234_567,
        name: "blob".into(),
        // Every byte value, so no format gets an easy run of small numbers.
        data: (0..4096).map(|i| (i * 31 % 256) as u8).collect(),
    }
}

fn encoded<T: Serialize>(serialization: Serialization, value: &T) -> BytesMut {
    let mut buf = BytesMut::new();
    serialization.serialize(value, &mut buf).unwrap();
    buf
}

fn print_sizes(_: &mut Criterion) {
    println!("encoded sizes, bytes:");
    println!("{:<10} {:>8} {:>8}", "format", "small", "4k");
    for serialization in Serialization::enabled() {
        println!(
            "{:<10} {:>8} {:>8}",
            serialization.name(),
            encoded(serialization, &small()).len(),
            encoded(serialization, &payload()).len()
        );
    }
}

fn bench_case<T>(c: &mut Criterion, case: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut group = c.benchmark_group(format!("serialize/{case}"));
    for serialization in Serialization::enabled() {
        let len = encoded(serialization, value).len();
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = BytesMut::with_capacity(len);
        group.bench_function(BenchmarkId::new(serialization.name(), len), |b| {
            b.iter(|| {
                buf.clear();
                serialization.serialize(black_box(value), &mut buf).unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("deserialize/{case}"));
    for serialization in Serialization::enabled() {
        let bytes = encoded(serialization, value);
        let back: T = serialization.deserialize(&bytes).unwrap();
        assert_eq!(&back, value, "{serialization} does not round-trip");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new(serialization.name(), bytes.len()), |b| {
            b.iter(|| serialization.deserialize::<T>(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn small_struct(c: &mut Criterion) {
    bench_case(c, "small", &small());
}

fn payload_4k(c: &mut Criterion) {
    bench_case(c, "4k", &payload());
}

criterion_group!(benches, print_sizes, small_struct, payload_4k);
criterion_main!(benches);
