//! Whole calls through a real server and client in one process, over loopback: an echo service
//! that returns its 128-byte `Bytes` argument, called one at a time (round-trip latency) and 256
//! at a time (throughput with many calls in flight on one connection).
//!
//! The calls are made from a task on the runtime, as an application makes them. Each case runs
//! on a current-thread runtime, where client and server share one thread, and on a multi-thread
//! runtime with one worker per core.
//!
//! Before the groups, allocations per call are counted on a current-thread runtime, over every
//! thread of the process (client and server both), and printed. The counting allocator stays in
//! place while criterion measures, so the timings include its cost: a few atomic additions per
//! allocation.
//!
//! The server's dispatch path cannot be measured alone: a dispatcher takes a
//! `tether::__private::Call`, which only the transport can build.
//!
//! Run with `cargo bench -p tether --all-features --bench call`.

use std::{
    alloc::System,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tether::{Client, Server};
use tokio::runtime::{Builder, Runtime};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The argument of every call.
static PAYLOAD: [u8; 128] = [0x5A; 128];
/// Calls in flight at once in the concurrent case.
const IN_FLIGHT: usize = 256;
/// Sequential calls counted, after `WARM_UP_CALLS` uncounted ones.
const COUNTED_CALLS: usize = 10_000;
const WARM_UP_CALLS: usize = 1000;
/// Batches of `IN_FLIGHT` calls counted, after `WARM_UP_BATCHES` uncounted ones.
const COUNTED_BATCHES: usize = 40;
const WARM_UP_BATCHES: usize = 4;

#[tether::service(name = "bench.Echo")]
trait Echo {
    async fn echo(&self, payload: Bytes) -> Bytes;
}

struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: Bytes) -> Bytes {
        payload
    }
}

fn payload() -> Bytes {
    Bytes::from_static(&PAYLOAD)
}

/// A server on a free port of 127.0.0.1 and a client connected to it.
async fn start() -> (Server, EchoClient) {
    let server = Server::builder()
        .serve(EchoServer::new(Echoer))
        .bind("127.0.0.1:0")
        .await
        .expect("the server binds 127.0.0.1:0");
    let client = Client::connect(server.local_addr())
        .await
        .expect("the client connects");
    let echo = EchoClient::new(client);
    let reply = echo.echo(payload()).await.expect("the call succeeds");
    assert_eq!(reply, payload());
    (server, echo)
}

async fn stop(server: Server, echo: EchoClient) {
    drop(echo);
    server.shutdown().await;
}

async fn one_call(echo: &EchoClient) {
    black_box(echo.echo(payload()).await.unwrap());
}

async fn one_batch(echo: &EchoClient) {
    let calls = (0..IN_FLIGHT).map(|_| echo.echo(payload()));
    for reply in join_all(calls).await {
        black_box(reply.unwrap());
    }
}

fn runtime(flavor: &str) -> Runtime {
    let mut builder = match flavor {
        "current_thread" => Builder::new_current_thread(),
        _ => Builder::new_multi_thread(),
    };
    builder.enable_all().build().unwrap()
}

fn print_line(what: &str, calls: usize, region: &Region<'_, System>) {
    let change = region.change();
    let n = calls as f64;
    println!(
        "{what}: {:.2} (bytes {:.1})",
        (change.allocations + change.reallocations) as f64 / n,
        change.bytes_allocated as f64 / n
    );
}

fn print_allocations(_: &mut Criterion) {
    let rt = runtime("current_thread");
    rt.block_on(async {
        let (server, echo) = start().await;

        for _ in 0..WARM_UP_CALLS {
            one_call(&echo).await;
        }
        let region = Region::new(GLOBAL);
        for _ in 0..COUNTED_CALLS {
            one_call(&echo).await;
        }
        print_line(
            "allocations per call (sequential, 128 B)",
            COUNTED_CALLS,
            &region,
        );

        for _ in 0..WARM_UP_BATCHES {
            one_batch(&echo).await;
        }
        let region = Region::new(GLOBAL);
        for _ in 0..COUNTED_BATCHES {
            one_batch(&echo).await;
        }
        let calls = COUNTED_BATCHES * IN_FLIGHT;
        print_line(
            &format!("allocations per call ({IN_FLIGHT} in flight, 128 B)"),
            calls,
            &region,
        );

        // The share of the line above that is `join_all` itself, not tether.
        let region = Region::new(GLOBAL);
        for _ in 0..COUNTED_BATCHES {
            black_box(join_all((0..IN_FLIGHT).map(|_| async { payload() })).await);
        }
        print_line(
            &format!("of which join_all of {IN_FLIGHT} futures, per future"),
            calls,
            &region,
        );

        stop(server, echo).await;
    });
}

/// Times `iters` rounds in a task spawned on `rt`, as an application calls from its own tasks;
/// the benchmark thread only waits for that task.
fn timed(rt: &Runtime, echo: &EchoClient, iters: u64, batch: bool) -> Duration {
    let echo = echo.clone();
    let task = rt.spawn(async move {
        let start = Instant::now();
        for _ in 0..iters {
            if batch {
                one_batch(&echo).await;
            } else {
                one_call(&echo).await;
            }
        }
        start.elapsed()
    });
    rt.block_on(task).unwrap()
}

fn calls(c: &mut Criterion) {
    for flavor in ["current_thread", "multi_thread"] {
        let rt = runtime(flavor);
        let (server, echo) = rt.block_on(start());

        let mut group = c.benchmark_group("call");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("sequential_128B", flavor), |b| {
            b.iter_custom(|iters| timed(&rt, &echo, iters, false))
        });
        group.throughput(Throughput::Elements(IN_FLIGHT as u64));
        group.bench_function(
            BenchmarkId::new(format!("in_flight_{IN_FLIGHT}_128B"), flavor),
            |b| b.iter_custom(|iters| timed(&rt, &echo, iters, true)),
        );
        group.finish();

        rt.block_on(stop(server, echo));
    }
}

criterion_group!(benches, print_allocations, calls);
criterion_main!(benches);
