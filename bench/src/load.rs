//! The load generator: a fixed number of calls in flight, each worker calling again the moment
//! its reply arrives (a closed loop), latencies recorded after a warm-up.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{stacks::Caller, sys::CpuClock};

/// How one run loads the server.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Connections opened; worker `i` calls over connection `i % connections`.
    pub(crate) connections: usize,
    /// Calls in flight at any moment: one per worker.
    pub(crate) in_flight: usize,
    /// Bytes of payload per call, echoed back.
    pub(crate) payload: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// The server process, whose CPU time is read at both ends of the measured window.
    pub(crate) server_pid: Option<u32>,
}

/// What one run measured; the client process prints it as a JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// Calls completed inside the measured window.
    pub(crate) calls: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// CPU time over wall time in the window: 1.0 is one core busy.
    pub(crate) server_cpu: f64,
    pub(crate) client_cpu: f64,
    /// Calls that failed, warm-up included; a run with any is reported, not hidden.
    pub(crate) errors: u64,
}

impl Outcome {
    pub(crate) fn qps(&self) -> f64 {
        self.calls as f64 / self.seconds
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// What one worker counted; latencies go to the histogram all workers share.
struct Tally {
    calls: u64,
    errors: u64,
}

/// One histogram for every worker of the process: a histogram per worker (hundreds of them, of
/// about 400 KiB each) would take a cache miss per record and crowd out the stack under test.
/// The workers share one runtime thread, so the lock is never contended.
type Latencies = Arc<Mutex<Histogram<u64>>>;

/// Runs `plan` over `callers` (one per connection) and measures it.
pub(crate) async fn run<C: Caller>(callers: Vec<C>, plan: &Plan) -> Result<Outcome> {
    ensure!(!callers.is_empty(), "no connection");
    let phase = Arc::new(AtomicU8::new(WARMING));
    let latencies: Latencies = Arc::new(Mutex::new(new_histogram()));
    let payload = Bytes::from(vec![0xA5; plan.payload]);
    let workers: Vec<_> = (0..plan.in_flight)
        .map(|i| {
            let caller = callers[i % callers.len()].clone();
            tokio::spawn(work(
                caller,
                payload.clone(),
                phase.clone(),
                latencies.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(plan.warmup).await;
    let server = plan.server_pid.map(CpuClock::of_process);
    let server_start = server.as_ref().map(CpuClock::read).transpose()?;
    let client_start = CpuClock::of_self().read()?;
    let started = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    tokio::time::sleep(plan.duration).await;
    phase.store(STOPPED, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let client_cpu = (CpuClock::of_self().read()? - client_start).as_secs_f64() / seconds;
    let server_cpu = match (server, server_start) {
        (Some(clock), Some(start)) => (clock.read()? - start).as_secs_f64() / seconds,
        _ => f64::NAN,
    };

    let (mut calls, mut errors) = (0, 0);
    for worker in workers {
        let tally = worker.await.context("worker panicked")?;
        calls += tally.calls;
        errors += tally.errors;
    }
    let latencies = latencies.lock().expect("latency lock");
    let micros = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok(Outcome {
        calls,
        seconds,
        p50_us: micros(0.5),
        p99_us: micros(0.99),
        p999_us: micros(0.999),
        server_cpu,
        client_cpu,
        errors,
    })
}

async fn work<C: Caller>(
    mut caller: C,
    payload: Bytes,
    phase: Arc<AtomicU8>,
    latencies: Latencies,
) -> Tally {
    let mut tally = Tally {
        calls: 0,
        errors: 0,
    };
    loop {
        let started = Instant::now();
        let ok = match caller.call(payload.clone()).await {
            Ok(reply) => reply.len() == payload.len(),
            Err(error) => {
                if tally.errors == 0 {
                    eprintln!("call failed: {error:#}");
                }
                false
            }
        };
        let elapsed = started.elapsed();
        match phase.load(Ordering::Relaxed) {
            WARMING => {}
            MEASURING => {
                if ok {
                    tally.calls += 1;
                    // Latencies beyond the histogram's bound (a minute) count as the bound.
                    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                    latencies
                        .lock()
                        .expect("latency lock")
                        .saturating_record(nanos);
                }
            }
            _ => break,
        }
        if !ok {
            tally.errors += 1;
            // A failing stack must not spin: the run reports the errors, not a flood of them.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

/// Nanoseconds from 1 ns to a minute, to three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Echo;

    impl Caller for Echo {
        async fn call(&mut self, payload: Bytes) -> Result<Bytes> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(payload)
        }
    }

    #[tokio::test]
    async fn counts_only_the_measured_window() {
        let plan = Plan {
            connections: 1,
            in_flight: 4,
            payload: 16,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(100),
            server_pid: None,
        };
        let outcome = run(vec![Echo], &plan).await.unwrap();
        assert_eq!(outcome.errors, 0);
        // Four workers at about a millisecond a call for 100 ms: well under 4 × 150 calls,
        // which would mean the warm-up was counted too.
        assert!(outcome.calls > 0 && outcome.calls < 4 * 150, "{outcome:?}");
        assert!(outcome.p50_us >= 1000.0, "{outcome:?}");
        assert!(outcome.server_cpu.is_nan());
    }
}
