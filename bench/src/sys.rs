//! What the benchmark reads from the operating system: CPU time and memory of a process (from
//! Linux's `/proc`), the machine it runs on, and whether processes can be pinned to cores.

use std::{fs, ops::Sub, process::Command, time::Duration};

use anyhow::{Context, Result};

/// Linux reports CPU time in `/proc/<pid>/stat` in ticks of `USER_HZ`, which the kernel fixes at
/// 100 per second for user space on every architecture it runs on.
const TICKS_PER_SECOND: u64 = 100;

/// The CPU time (user and system, every thread) of one process.
#[derive(Debug, Clone)]
pub(crate) struct CpuClock {
    path: String,
}

/// A reading of a [`CpuClock`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime(Duration);

impl Sub for CpuTime {
    type Output = Duration;

    fn sub(self, earlier: CpuTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl CpuClock {
    pub(crate) fn of_self() -> Self {
        Self {
            path: "/proc/self/stat".to_owned(),
        }
    }

    pub(crate) fn of_process(pid: u32) -> Self {
        Self {
            path: format!("/proc/{pid}/stat"),
        }
    }

    pub(crate) fn read(&self) -> Result<CpuTime> {
        let stat =
            fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path))?;
        parse_stat(&stat)
    }
}

fn parse_stat(stat: &str) -> Result<CpuTime> {
    // The command name (field 2) is in parentheses and may hold spaces; the fields after
    // its closing parenthesis start at field 3 (state), so utime and stime (fields 14 and
    // 15) are the 12th and 13th after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc stat line")?
            .parse()
            .context("bad /proc stat field")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(CpuTime(Duration::from_millis(
        total * 1000 / TICKS_PER_SECOND,
    )))
}

/// The most resident memory `pid` has had (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmHWM:")
}

/// The resident memory of `pid` now (`VmRSS`), in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, name: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    kib_field(&status, name).with_context(|| format!("no readable {name} line in {path}"))
}

/// The value of a `Name:   1234 kB` line, as `/proc/<pid>/status` and `/proc/meminfo` write them.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A line describing the machine: CPU model, cores, memory, kernel.
pub(crate) fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| kib_field(&info, "MemTotal:"))
        .map(|kib| format!("{} GiB", kib / (1024 * 1024)))
        .unwrap_or_else(|| "unknown memory".to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{model}, {cores} cores available, {memory}, Linux {kernel}")
}

/// How server and client processes are placed on cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// The server on core 0, the client on core 1, with `taskset`.
    Pinned,
    /// Not pinned, and why.
    Unpinned(&'static str),
}

impl Placement {
    pub(crate) fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores < 2 {
            return Placement::Unpinned("fewer than two cores available");
        }
        let taskset = Command::new("taskset").args(["-c", "0", "true"]).status();
        match taskset {
            Ok(status) if status.success() => Placement::Pinned,
            _ => Placement::Unpinned("`taskset` (util-linux) is not available"),
        }
    }

    /// A command that runs `program` on `core` when pinned.
    pub(crate) fn command(self, core: usize, program: &std::path::Path) -> Command {
        match self {
            Placement::Pinned => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(core.to_string()).arg(program);
                command
            }
            Placement::Unpinned(_) => Command::new(program),
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Placement::Pinned => "server pinned to core 0, client to core 1 (taskset)".to_owned(),
            Placement::Unpinned(why) => format!("processes not pinned to cores: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_stat(line).unwrap().0, Duration::from_millis(3250));
        assert!(parse_stat("4242 (short) S 1").is_err());
    }

    #[test]
    fn reads_kib_fields_of_status_and_meminfo() {
        let text = "Name:\ttether-bench\nVmHWM:\t   5604 kB\nMemTotal:       24683416 kB\n";
        assert_eq!(kib_field(text, "VmHWM:"), Some(5604));
        assert_eq!(kib_field(text, "MemTotal:"), Some(24_683_416));
        assert_eq!(kib_field(text, "VmRSS:"), None);
        assert_eq!(kib_field(text, "Name:"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        CpuClock::of_process(pid).read().unwrap();
        CpuClock::of_self().read().unwrap();
        // The peak, read last, is at least any resident size read before it.
        let rss = rss_kib(pid).unwrap();
        assert!(rss > 0);
        assert!(peak_rss_kib(pid).unwrap() >= rss);
        assert!(machine().contains("cores available"));
    }
}
