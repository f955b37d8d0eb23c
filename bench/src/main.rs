//! tether's benchmark: the same echo load against tether (each serialization format), tarpc,
//! tonic and a raw TCP baseline, each server and the load generator in processes of their own,
//! pinned to different cores; then a connection-scale run of idle tether connections.
//!
//! `cargo run --release -p tether-bench -- --quick` takes about two minutes; without `--quick` it
//! runs every configuration three times, stacks alternating, and takes about 25 minutes.

mod idle;
mod load;
mod process;
mod report;
mod stacks;
mod sys;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::{
    load::{Outcome, Plan},
    process::ServerProcess,
    report::{Config, JsonReport, Row},
    stacks::Stack,
    sys::Placement,
};

/// Compares tether with tarpc, tonic and raw TCP on one machine and prints a markdown report.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A run of about two minutes: one repetition, 0.5 s warm-up, 2 s per measurement.
    #[arg(long)]
    quick: bool,
    /// Also write every row as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Only these stacks (comma-separated, e.g. `raw,tether-bincode,tarpc-nodelay`).
    #[arg(long, value_delimiter = ',')]
    stacks: Option<Vec<Stack>>,
    /// Only configurations with this many calls in flight (comma-separated).
    #[arg(long, value_delimiter = ',')]
    in_flight: Option<Vec<usize>>,
    /// Connections from the load generator to the server.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Repetitions of every run (default: 3, or 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds measured per run (default: 10, or 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds of warm-up before each measurement (default: 2, or 0.5 with --quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Idle connections for the connection-scale run; 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Only the connection-scale run, no comparison.
    #[arg(long)]
    only_idle: bool,
    /// Seconds the connection-scale run measures the idle server.
    #[arg(long, default_value_t = 10.0)]
    idle_seconds: f64,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The roles the benchmark starts itself in, as child processes.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serves one stack's echo on a free loopback port and prints `listening on ADDR`.
    #[command(hide = true)]
    Serve { stack: Stack },
    /// Loads a server and prints what it measured as one JSON line.
    #[command(hide = true)]
    Load {
        stack: Stack,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        in_flight: usize,
        #[arg(long)]
        payload: usize,
        #[arg(long)]
        warmup_ms: u64,
        #[arg(long)]
        duration_ms: u64,
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Serves tether with heartbeats for the connection-scale run.
    #[command(hide = true)]
    IdleServe,
    /// Opens idle tether connections and holds them.
    #[command(hide = true)]
    IdleHold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        hold_ms: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        None => compare(&args),
        Some(Command::Serve { stack }) => runtime()?.block_on(async {
            let listener = listen().await?;
            stack.serve(listener).await
        }),
        Some(Command::Load {
            stack,
            addr,
            connections,
            in_flight,
            payload,
            warmup_ms,
            duration_ms,
            server_pid,
        }) => {
            let plan = Plan {
                connections,
                in_flight,
                payload,
                warmup: Duration::from_millis(warmup_ms),
                duration: Duration::from_millis(duration_ms),
                server_pid,
            };
            let outcome = runtime()?.block_on(stack.load(addr, &plan))?;
            println!("{}", serde_json::to_string(&outcome)?);
            // Connections and their tasks are not wound down: the process ends here.
            std::process::exit(0)
        }
        Some(Command::IdleServe) => runtime()?.block_on(async {
            let listener = listen().await?;
            idle::serve(listener).await
        }),
        Some(Command::IdleHold {
            addr,
            connections,
            hold_ms,
        }) => {
            runtime()?.block_on(idle::hold(
                addr,
                connections,
                Duration::from_millis(hold_ms),
            ))?;
            std::process::exit(0)
        }
    }
}

/// Every process runs one worker thread: it is pinned to one core, and every stack gets the
/// same.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// Binds a free loopback port and says which on stdout.
async fn listen() -> Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// The comparison itself, run from the parent process.
fn compare(args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("locating this program")?;
    let placement = Placement::detect();
    let machine = sys::machine();
    let (reps, seconds, warmup) = if args.quick {
        (1, 2.0, 0.5)
    } else {
        (3, 10.0, 2.0)
    };
    let reps = if args.only_idle {
        0
    } else {
        args.reps.unwrap_or(reps)
    };
    let duration = Duration::from_secs_f64(args.seconds.unwrap_or(seconds));
    let warmup = Duration::from_secs_f64(args.warmup.unwrap_or(warmup));
    let stacks = args.stacks.clone().unwrap_or_else(Stack::all);
    let configs: Vec<Config> = [(1, 128), (32, 128), (256, 128), (256, 4096)]
        .into_iter()
        .filter(|(k, _)| args.in_flight.as_ref().is_none_or(|only| only.contains(k)))
        .map(|(in_flight, payload)| Config { in_flight, payload })
        .collect();
    ensure!(!configs.is_empty(), "no configuration left to run");

    eprintln!("machine: {machine}");
    eprintln!("{}", placement.describe());
    eprintln!(
        "{} stacks × {} configurations × {reps} repetitions, {:.1} s warm-up + {:.1} s each",
        stacks.len(),
        configs.len(),
        warmup.as_secs_f64(),
        duration.as_secs_f64()
    );
    let started = Instant::now();
    let mut runs = Vec::new();
    for rep in 0..reps {
        for &config in &configs {
            // Alternate the order so drift over the run (heat, other load) does not favour
            // whichever stack always goes first.
            let order: Vec<Stack> = if rep % 2 == 0 {
                stacks.clone()
            } else {
                stacks.iter().rev().copied().collect()
            };
            for stack in order {
                let plan = Plan {
                    connections: args.connections,
                    in_flight: config.in_flight,
                    payload: config.payload,
                    warmup,
                    duration,
                    server_pid: None,
                };
                let (outcome, rss) = run_one(&exe, placement, stack, &plan)
                    .with_context(|| format!("{stack}, {}", config.label()))?;
                let row = Row::new(stack, config, &outcome, rss, rep);
                eprintln!(
                    "[{:>4.0} s] rep {} {:<16} {:>4} × {:<6} {:>9} QPS  p50 {:>9}  p99 {:>9}{}",
                    started.elapsed().as_secs_f64(),
                    rep + 1,
                    row.name,
                    config.in_flight,
                    report::bytes(config.payload),
                    report::qps(row.qps),
                    report::micros(row.p50_us),
                    report::micros(row.p99_us),
                    if row.errors > 0 {
                        format!("  {} errors", row.errors)
                    } else {
                        String::new()
                    }
                );
                runs.push(row);
            }
        }
    }
    let rows = report::medians(&runs);

    let idle = if args.idle_connections > 0 {
        eprintln!(
            "connection-scale run: {} idle connections, heartbeat {} ms",
            args.idle_connections,
            idle::HEARTBEAT.as_millis()
        );
        Some(idle::run(
            &exe,
            placement,
            args.idle_connections,
            Duration::from_secs_f64(args.idle_seconds),
        )?)
    } else {
        None
    };

    let mode = if args.only_idle {
        "idle"
    } else if args.quick {
        "quick"
    } else {
        "full"
    };
    println!("## tether-bench ({mode})\n");
    println!("- machine: {machine}");
    println!("- {}", placement.describe());
    if !runs.is_empty() {
        println!(
            "- {} connections, echo of a byte payload, {:.1} s measured after {:.1} s of \
             warm-up, median of {reps} run(s) by QPS, stacks alternating",
            args.connections,
            duration.as_secs_f64(),
            warmup.as_secs_f64(),
        );
        println!("- one tokio worker thread in each process\n");
        println!("{}", report::markdown(&rows, &configs));
    }
    println!("\nGoals (reported, not enforced):\n");
    if !runs.is_empty() {
        print!("{}", report::goals(&rows));
    }
    if let Some(idle) = &idle {
        print!("{}", idle.goals());
        println!("\n### Idle connections\n");
        print!("{}", idle.markdown());
    }
    if let Some(path) = &args.json {
        let json = JsonReport {
            machine: &machine,
            placement: &placement.describe(),
            mode,
            connections: args.connections,
            warmup_s: warmup.as_secs_f64(),
            duration_s: duration.as_secs_f64(),
            repetitions: reps,
            rows: &rows,
            runs: &runs,
            idle: idle.as_ref(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One stack, one configuration: a fresh server process, a load process; returns what the load
/// measured and the server's peak resident memory.
fn run_one(exe: &Path, placement: Placement, stack: Stack, plan: &Plan) -> Result<(Outcome, u64)> {
    let stack_name = stack.to_string();
    let mut server = ServerProcess::start(exe, placement, &["serve", &stack_name])?;
    let output = placement
        .command(1, exe)
        .arg("load")
        .arg(&stack_name)
        .args(["--addr", &server.addr.to_string()])
        .args(["--connections", &plan.connections.to_string()])
        .args(["--in-flight", &plan.in_flight.to_string()])
        .args(["--payload", &plan.payload.to_string()])
        .args(["--warmup-ms", &plan.warmup.as_millis().to_string()])
        .args(["--duration-ms", &plan.duration.as_millis().to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the load generator")?;
    let rss = sys::peak_rss_kib(server.pid())?;
    server.stop();
    ensure!(
        output.status.success(),
        "the load generator failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let outcome: Outcome =
        serde_json::from_str(line).with_context(|| format!("load generator said {line:?}"))?;
    Ok((outcome, rss))
}
