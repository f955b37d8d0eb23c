//! Benchmark processes: a server started on its own core, killed when dropped.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::sys::Placement;

/// A benchmark server in its own process, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `exe` with `args` on core 0 and waits for the address it says it listens on.
    pub(crate) fn start(exe: &Path, placement: Placement, args: &[&str]) -> Result<Self> {
        let mut child = placement
            .command(0, exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server did not start: {line:?}");
        };
        let addr = addr.parse().context("the server's address")?;
        Ok(Self { child, addr })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
