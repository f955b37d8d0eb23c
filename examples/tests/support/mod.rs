//! What the tests of the example programs share: the `provider` program built next to them, run
//! as a child process on a port it picks itself (`--addr 127.0.0.1:0`, then the line
//! `listening on ADDR` names it), or again on the address it had.
//!
//! No port is chosen by binding and closing a listener: such a port lies in the kernel's
//! ephemeral range, and any connection of the machine may take it before the provider binds it.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::{Instant, timeout},
};

/// How long a provider may take to say it listens.
const START: Duration = Duration::from_secs(20);

/// The `provider` example built alongside this test: `current_exe()` is
/// `target/<profile>/deps/<test>`, the examples are in `target/<profile>/examples/`.
pub(crate) fn provider_program() -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let profile = test
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let program = profile
        .join("examples")
        .join(format!("provider{}", std::env::consts::EXE_SUFFIX));
    assert!(
        program.is_file(),
        "{} is missing: `cargo test -p tether-examples` builds the examples before it runs the \
         tests; with one `--test` alone, run `cargo build -p tether-examples --examples` first",
        program.display()
    );
    program
}

/// A running `provider` process, killed when dropped so that a failing test leaves no process
/// behind.
#[derive(Debug)]
pub(crate) struct ProviderProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProviderProcess {
    /// Starts `provider --addr 127.0.0.1:0 ARGS…` and waits for the line that says where it
    /// listens.
    pub(crate) async fn start(args: &[String]) -> Self {
        match Self::try_start("127.0.0.1:0", args).await {
            Ok(provider) => provider,
            Err(failure) => panic!("the provider did not start: {failure}"),
        }
    }

    /// Starts the provider on `addr` again, where an earlier one listened: while the port is in
    /// use (a connection of the machine took it as its local port meanwhile), another try every
    /// 100 ms, for at most 20 s.
    pub(crate) async fn start_again(addr: SocketAddr, args: &[String]) -> Self {
        let deadline = Instant::now() + START;
        loop {
            match Self::try_start(&addr.to_string(), args).await {
                Ok(provider) => return provider,
                Err(failure) if failure.contains("in use") && Instant::now() < deadline => {
                    eprintln!("the provider's port is taken, trying again: {failure}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(failure) => panic!("the provider did not start again on {addr}: {failure}"),
            }
        }
    }

    /// The provider on `addr` with `args`, once it says it listens; or what it printed on
    /// standard error before it ended.
    async fn try_start(addr: &str, args: &[String]) -> Result<Self, String> {
        let mut child = Command::new(provider_program())
            .arg("--addr")
            .arg(addr)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the provider starts");
        // Both streams are read to their end for as long as the process lives, so that a late
        // line never meets a closed pipe; stderr is passed on to the test's own.
        let (lines, mut listening) = mpsc::unbounded_channel();
        forward(
            child.stdout.take().expect("piped"),
            Some(lines.clone()),
            false,
        );
        let (errors, mut stderr) = mpsc::unbounded_channel();
        forward(child.stderr.take().expect("piped"), Some(errors), true);
        drop(lines);
        let said = timeout(START, async {
            while let Some(line) = listening.recv().await {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await;
        match said {
            Ok(Some(addr)) => Ok(Self { child, addr }),
            Ok(None) => {
                let status = timeout(START, child.wait()).await;
                let mut printed = String::new();
                while let Ok(line) = stderr.try_recv() {
                    printed.push_str(&line);
                    printed.push('\n');
                }
                Err(format!("it ended ({status:?}) saying: {printed}"))
            }
            Err(_) => Err(format!("no `listening on` line within {START:?}")),
        }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `kill -9`, and waits for the process to be gone.
    pub(crate) async fn kill(&mut self) {
        timeout(START, self.child.kill())
            .await
            .expect("the provider dies within the bound")
            .expect("SIGKILL");
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        // Already dead after `kill`: the error says so, and nothing is left to do.
        let _ = self.child.start_kill();
    }
}

/// Reads `stream` line by line until it ends, sending each line to `lines` while anyone
/// listens, and echoing it on the test's stderr if `echo`.
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    mut lines: Option<mpsc::UnboundedSender<String>>,
    echo: bool,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if echo {
                eprintln!("provider: {line}");
            }
            if let Some(sender) = &lines
                && sender.send(line).is_err()
            {
                lines = None;
            }
        }
    });
}
