//! Real registry servers for the tests, started and stopped through
//! `scripts/registry-servers.sh`: each test gets its own server on free ports of 127.0.0.1, and
//! the server stops when the handle is dropped, even when the test fails.
//!
//! The servers must be installed first (`scripts/registry-servers.sh install`, which
//! `scripts/test.sh` runs); a missing server fails the test with that instruction.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// The kinds of server the script starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ZooKeeper,
    ZooKeeperEnsemble,
    Etcd,
    EtcdCluster,
    Redis,
}

impl Kind {
    fn script_name(self) -> &'static str {
        match self {
            Self::ZooKeeper => "zookeeper",
            Self::ZooKeeperEnsemble => "zookeeper-ensemble",
            Self::Etcd => "etcd",
            Self::EtcdCluster => "etcd-cluster",
            Self::Redis => "redis",
        }
    }

    /// Ports the kind uses, from the first one.
    fn ports(self) -> u16 {
        match self {
            Self::ZooKeeper | Self::Redis => 1,
            Self::Etcd => 2,
            Self::EtcdCluster => 6,
            Self::ZooKeeperEnsemble => 9,
        }
    }

    fn is_cluster(self) -> bool {
        matches!(self, Self::ZooKeeperEnsemble | Self::EtcdCluster)
    }
}

/// A running server (or cluster); stopped on drop.
#[derive(Debug)]
pub(crate) struct TestServer {
    kind: Kind,
    name: String,
    addr: String,
}

pub(crate) fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/registry-servers.sh")
}

/// The exit status of the script when a port it was given turned out to be taken: trying other
/// ports may succeed.
const PORT_TAKEN: i32 = 75;

/// How many sets of ports [`TestServer::start`] tries.
const PORT_TRIES: usize = 3;

/// Runs the script with `args` and returns its stdout, panicking with its stderr on failure.
pub(crate) fn run(args: &[&str]) -> String {
    match try_run(args) {
        Ok(stdout) => stdout,
        Err((_, failure)) => panic!("{failure}"),
    }
}

/// Runs the script with `args`: its stdout, or its exit code and a message with its output.
fn try_run(args: &[&str]) -> Result<String, (Option<i32>, String)> {
    let output = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(stdout);
    }
    Err((
        output.status.code(),
        format!(
            "registry-servers.sh {args:?} failed ({}); did `scripts/registry-servers.sh install` \
             run?\n{stdout}\n{stderr}",
            output.status
        ),
    ))
}

impl TestServer {
    /// Starts a server of `kind` with the script's default options and `extra` ones.
    pub(crate) fn start(kind: Kind, extra: &[&str]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}-{}",
            kind.script_name(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let port_flag = if kind.is_cluster() {
            "--base-port"
        } else {
            "--port"
        };
        // The script hands out ports below the kernel's ephemeral range and reserves them for
        // this run, so no other test and no outgoing connection takes them; a process outside
        // the run still may, and then the script says so and other ports are tried.
        let mut failures = Vec::new();
        for _ in 0..PORT_TRIES {
            let port = run(&["free-port", &kind.ports().to_string()])
                .trim()
                .to_owned();
            let mut args = vec!["start", kind.script_name(), &name, port_flag, &port];
            args.extend_from_slice(extra);
            match try_run(&args) {
                Ok(stdout) => {
                    let addr = stdout.lines().last().unwrap_or_default().trim().to_owned();
                    assert!(!addr.is_empty(), "no address printed for {name}");
                    return Self { kind, name, addr };
                }
                Err((Some(PORT_TAKEN), failure)) => failures.push(failure),
                Err((_, failure)) => panic!("{failure}"),
            }
        }
        panic!("{name}: every port tried was taken: {failures:#?}")
    }

    /// `host:port`, or for a cluster `host:port,host:port,host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The script's name for the server (cluster nodes are `{name}-1` …).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Stops the server, or node `n` (1-based) of a cluster, keeping its data.
    pub(crate) fn stop_node(&self, node: Option<u32>) {
        run(&["stop", &self.node_name(node)]);
    }

    /// Starts a stopped server or node again with its data.
    pub(crate) fn start_node(&self, node: Option<u32>) {
        run(&["start-node", &self.node_name(node)]);
    }

    /// Stops and starts the server (all of a cluster) with the same config and data.
    pub(crate) fn restart(&self) {
        run(&["restart", &self.name]);
    }

    /// A standalone ZooKeeper expires every client session (a restart does not).
    pub(crate) fn expire_sessions(&self) {
        run(&["expire-sessions", &self.name]);
    }

    /// The server hangs (SIGSTOP) / comes back (SIGCONT).
    pub(crate) fn pause(&self) {
        run(&["pause", &self.name]);
    }

    pub(crate) fn resume(&self) {
        run(&["resume", &self.name]);
    }

    fn node_name(&self, node: Option<u32>) -> String {
        match node {
            Some(n) => format!("{}-{n}", self.name),
            None => self.name.clone(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.name])
            .output();
        // A server's data stays behind after a stop (etcd preallocates 64 MB of log per node):
        // remove it, and every node's of a cluster, so repeated runs do not fill the disk.
        let run_dir =
            std::env::var("TETHER_RUN_DIR").unwrap_or_else(|_| "/tmp/tether-servers".to_owned());
        if let Ok(entries) = std::fs::read_dir(&run_dir) {
            let node_prefix = format!("{}-", self.name);
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == self.name || name.starts_with(&node_prefix) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// The path of a server's command-line tool, as the script reports it (`zkCli.sh`, `etcdctl`,
/// `redis-cli`). For ZooKeeper, prefer [`run`] with `zkcli HOST:PORT CMD…`, which strips its
/// noise.
pub(crate) fn paths() -> String {
    run(&["paths"])
}
