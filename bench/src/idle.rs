//! The connection-scale run: many idle clients on one tether server, heartbeats on, and what
//! that costs the server in memory and CPU.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use tether::{Client, ClientConfig, ConnectionState, Server, ServerConfig};
use tokio::net::TcpListener;

use crate::{
    process::ServerProcess,
    stacks::EchoServer,
    sys::{self, CpuClock, Placement},
};

/// The heartbeat interval of both ends.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleReport {
    pub(crate) connections: usize,
    pub(crate) heartbeat_ms: u64,
    /// The server's resident memory before any connection and with all of them open.
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// The difference, per connection, in bytes.
    pub(crate) bytes_per_connection: f64,
    /// The server's CPU time over the measured window: 1.0 is one core busy.
    pub(crate) server_cpu: f64,
    pub(crate) window_s: f64,
    /// Clients whose connection was still ready at the end of the window: heartbeats kept
    /// them alive through several idle timeouts.
    pub(crate) ready_at_end: usize,
}

/// The server side: a tether server with heartbeats every [`HEARTBEAT`].
pub(crate) async fn serve(listener: TcpListener) -> Result<()> {
    let mut config = ServerConfig::default();
    config.heartbeat_interval = HEARTBEAT;
    let _server = Server::builder()
        .config(config)
        .serve(EchoServer::new(crate::stacks::Echoer))
        .listen(listener)
        .await?;
    std::future::pending().await
}

/// The client side: opens `connections` clients, says so on stdout, then holds them idle for
/// `hold` and reports how many are still ready.
pub(crate) async fn hold(addr: SocketAddr, connections: usize, hold: Duration) -> Result<()> {
    let mut config = ClientConfig::default();
    config.heartbeat_interval = HEARTBEAT;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = Client::builder()
            .config(config.clone())
            .connect(addr)
            .await
            .with_context(|| format!("opening connection {}", clients.len() + 1))?;
        clients.push(client);
    }
    println!("connected {connections}");
    tokio::time::sleep(hold).await;
    let ready = clients
        .iter()
        .filter(|client| client.state() == ConnectionState::Ready)
        .count();
    println!("ready {ready}");
    Ok(())
}

/// Runs the whole measurement from the parent process.
pub(crate) fn run(
    exe: &Path,
    placement: Placement,
    connections: usize,
    window: Duration,
) -> Result<IdleReport> {
    let mut server = ServerProcess::start(exe, placement, &["idle-serve"])?;
    // Let the server's runtime settle before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before_kib = sys::rss_kib(server.pid())?;

    let settle = Duration::from_secs(3);
    let mut client = placement
        .command(1, exe)
        .args(["idle-hold", "--addr", &server.addr.to_string()])
        .args(["--connections", &connections.to_string()])
        .args([
            "--hold-ms",
            &(settle + window + Duration::from_secs(1))
                .as_millis()
                .to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the idle client")?;
    let mut lines = BufReader::new(client.stdout.take().context("client stdout")?).lines();
    let started = Instant::now();
    let connected = lines.next().transpose()?.unwrap_or_default();
    ensure!(
        connected.starts_with("connected"),
        "the idle client did not connect: {connected:?}"
    );
    eprintln!(
        "  {connections} connections open in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A few heartbeat intervals so every connection is past its first ping.
    std::thread::sleep(settle);
    let clock = CpuClock::of_process(server.pid());
    let cpu_start = clock.read()?;
    let window_start = Instant::now();
    std::thread::sleep(window);
    let cpu = clock.read()? - cpu_start;
    let window_s = window_start.elapsed().as_secs_f64();
    let rss_after_kib = sys::rss_kib(server.pid())?;

    let ready = lines.next().transpose()?.unwrap_or_default();
    let ready_at_end = ready
        .strip_prefix("ready ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("the idle client did not report: {ready:?}"))?;
    let status = client.wait()?;
    ensure!(status.success(), "the idle client failed: {status}");
    server.stop();

    Ok(IdleReport {
        connections,
        heartbeat_ms: HEARTBEAT.as_millis() as u64,
        rss_before_kib,
        rss_after_kib,
        bytes_per_connection: (rss_after_kib.saturating_sub(rss_before_kib) * 1024) as f64
            / connections as f64,
        server_cpu: cpu.as_secs_f64() / window_s,
        window_s,
        ready_at_end,
    })
}

impl IdleReport {
    pub(crate) fn markdown(&self) -> String {
        format!(
            "| connections | heartbeat | server RSS before | with connections | per connection | server CPU while idle | ready at the end |\n\
             |---|---|---|---|---|---|---|\n\
             | {} | {} ms | {} | {} | {:.1} KiB | {:.2} % of a core | {} of {} |\n",
            self.connections,
            self.heartbeat_ms,
            crate::report::kib(self.rss_before_kib),
            crate::report::kib(self.rss_after_kib),
            self.bytes_per_connection / 1024.0,
            self.server_cpu * 100.0,
            self.ready_at_end,
            self.connections,
        )
    }

    pub(crate) fn goals(&self) -> String {
        let memory = self.bytes_per_connection / 1024.0;
        let cpu = self.server_cpu * 100.0;
        let verdict = |met: bool| if met { "met" } else { "short" };
        format!(
            "- {} idle connections: {memory:.1} KiB of server memory each (goal under 16 KiB) — {}\n\
             - {} idle connections: {cpu:.2} % of a core for heartbeats (goal under 5 %) — {}\n",
            self.connections,
            verdict(memory < 16.0),
            self.connections,
            verdict(cpu < 5.0),
        )
    }
}
