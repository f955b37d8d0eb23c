//! Turning runs into the markdown tables and the JSON file.

use std::fmt::Write;

use serde::Serialize;

use crate::{load::Outcome, stacks::Stack};

/// Calls in flight and payload size: one column group of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct Config {
    pub(crate) in_flight: usize,
    pub(crate) payload: usize,
}

impl Config {
    pub(crate) fn label(self) -> String {
        format!("{} in flight, {}", self.in_flight, bytes(self.payload))
    }
}

/// One run of one stack on one configuration.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The stack as the command line names it, e.g. `tarpc-nodelay`.
    pub(crate) name: String,
    /// `raw`, `tether`, `tarpc` or `tonic`.
    pub(crate) stack: &'static str,
    pub(crate) format: String,
    pub(crate) nodelay: bool,
    pub(crate) in_flight: usize,
    pub(crate) payload: usize,
    pub(crate) qps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) server_rss_kib: u64,
    /// CPU time over wall time: 1.0 is one core busy.
    pub(crate) server_cpu: f64,
    pub(crate) client_cpu: f64,
    pub(crate) errors: u64,
    /// Which repetition this was (0-based); medians carry the repetition they came from.
    pub(crate) rep: usize,
}

impl Row {
    pub(crate) fn new(
        stack: Stack,
        config: Config,
        outcome: &Outcome,
        server_rss_kib: u64,
        rep: usize,
    ) -> Self {
        Self {
            name: stack.to_string(),
            stack: stack.family(),
            format: stack.format(),
            nodelay: stack.nodelay(),
            in_flight: config.in_flight,
            payload: config.payload,
            qps: outcome.qps(),
            p50_us: outcome.p50_us,
            p99_us: outcome.p99_us,
            p999_us: outcome.p999_us,
            server_rss_kib,
            server_cpu: outcome.server_cpu,
            client_cpu: outcome.client_cpu,
            errors: outcome.errors,
            rep,
        }
    }

    fn config(&self) -> Config {
        Config {
            in_flight: self.in_flight,
            payload: self.payload,
        }
    }
}

/// For each stack and configuration, the run with the median QPS.
pub(crate) fn medians(runs: &[Row]) -> Vec<Row> {
    let mut groups: Vec<((String, Config), Vec<&Row>)> = Vec::new();
    for run in runs {
        let key = (run.name.clone(), run.config());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(run),
            None => groups.push((key, vec![run])),
        }
    }
    groups
        .into_iter()
        .map(|(_, mut group)| {
            group.sort_by(|a, b| a.qps.total_cmp(&b.qps));
            group[group.len() / 2].clone()
        })
        .collect()
}

/// The markdown report: one table of every stack per configuration, then tether's ratios.
pub(crate) fn markdown(rows: &[Row], configs: &[Config]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| in flight | payload | stack | QPS | p50 | p99 | p999 | server RSS | server CPU | client CPU | QPS ÷ raw |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &config in configs {
        let group: Vec<&Row> = rows.iter().filter(|r| r.config() == config).collect();
        let raw = group.iter().find(|r| r.stack == "raw").map(|r| r.qps);
        for row in &group {
            let vs_raw = raw.map_or("–".to_owned(), |raw| format!("{:.2}", row.qps / raw));
            let errors = if row.errors > 0 {
                format!(" ({} errors)", row.errors)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                config.in_flight,
                bytes(config.payload),
                row.name,
                errors,
                qps(row.qps),
                micros(row.p50_us),
                micros(row.p99_us),
                micros(row.p999_us),
                kib(row.server_rss_kib),
                percent(row.server_cpu),
                percent(row.client_cpu),
                vs_raw,
            );
        }
    }
    out.push('\n');
    out.push_str(&ratios(rows, configs));
    out
}

/// tether (its default format, bincode) against raw and each peer at its better setup.
fn ratios(rows: &[Row], configs: &[Config]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tether (bincode) against each: QPS ratio (higher is better) and p50/p99 ratio (lower is \
         better); tarpc at its better setup, with or without TCP_NODELAY (tonic sets it by default).\n"
    );
    let _ = writeln!(
        out,
        "| in flight | payload | ÷ raw QPS | ÷ raw p50 | ÷ raw p99 | ÷ tarpc QPS | ÷ tarpc p99 | ÷ tonic QPS | ÷ tonic p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for &config in configs {
        let best = |family: &str| {
            rows.iter()
                .filter(|r| r.config() == config && r.stack == family)
                .max_by(|a, b| a.qps.total_cmp(&b.qps))
        };
        let tether = rows
            .iter()
            .find(|r| r.config() == config && r.name == "tether-bincode");
        let Some(tether) = tether else { continue };
        let ratio = |peer: Option<&Row>, f: fn(&Row) -> f64| {
            peer.map_or("–".to_owned(), |peer| {
                format!("{:.2}", f(tether) / f(peer))
            })
        };
        let (raw, tarpc, tonic) = (best("raw"), best("tarpc"), best("tonic"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            config.in_flight,
            bytes(config.payload),
            ratio(raw, |r| r.qps),
            ratio(raw, |r| r.p50_us),
            ratio(raw, |r| r.p99_us),
            ratio(tarpc, |r| r.qps),
            ratio(tarpc, |r| r.p99_us),
            ratio(tonic, |r| r.qps),
            ratio(tonic, |r| r.p99_us),
        );
    }
    out
}

/// The goals the benchmark reports against; none is asserted anywhere.
pub(crate) fn goals(rows: &[Row]) -> String {
    let find = |name: &str, in_flight: usize, payload: usize| {
        rows.iter()
            .find(|r| r.name == name && r.in_flight == in_flight && r.payload == payload)
    };
    let mut out = String::new();
    let mut goal = |what: &str,
                    tether: Option<&Row>,
                    raw: Option<&Row>,
                    check: &dyn Fn(&Row, &Row) -> (f64, f64, bool)| {
        let line = match (tether, raw) {
            (Some(tether), Some(raw)) => {
                let (value, target, met) = check(tether, raw);
                let verdict = if met { "met" } else { "short" };
                format!("- {what}: {value:.2} (goal {target}) — {verdict}")
            }
            _ => format!("- {what}: not measured in this run"),
        };
        let _ = writeln!(out, "{line}");
    };
    for (in_flight, payload) in [(256, 128), (256, 4096)] {
        goal(
            &format!("{in_flight} in flight, {}: QPS ÷ raw", bytes(payload)),
            find("tether-bincode", in_flight, payload),
            find("raw", in_flight, payload),
            &|t, r| (t.qps / r.qps, 0.5, t.qps >= 0.5 * r.qps),
        );
    }
    goal(
        "256 in flight, 128 B: p99 ÷ raw",
        find("tether-bincode", 256, 128),
        find("raw", 256, 128),
        &|t, r| (t.p99_us / r.p99_us, 2.0, t.p99_us <= 2.0 * r.p99_us),
    );
    goal(
        "1 in flight, 128 B: p50 ÷ raw",
        find("tether-bincode", 1, 128),
        find("raw", 1, 128),
        &|t, r| (t.p50_us / r.p50_us, 1.2, t.p50_us <= 1.2 * r.p50_us),
    );
    out
}

/// The JSON file `--json` writes.
#[derive(Debug, Serialize)]
pub(crate) struct JsonReport<'a> {
    pub(crate) machine: &'a str,
    pub(crate) placement: &'a str,
    pub(crate) mode: &'a str,
    pub(crate) connections: usize,
    pub(crate) warmup_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) repetitions: usize,
    /// The median run of each stack and configuration: what the table shows.
    pub(crate) rows: &'a [Row],
    /// Every run.
    pub(crate) runs: &'a [Row],
    /// The connection-scale run, when it was part of this invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle: Option<&'a crate::idle::IdleReport>,
}

pub(crate) fn qps(qps: f64) -> String {
    if qps >= 1e6 {
        format!("{:.2}M", qps / 1e6)
    } else if qps >= 1e3 {
        format!("{:.1}k", qps / 1e3)
    } else {
        format!("{qps:.0}")
    }
}

pub(crate) fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub(crate) fn kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

fn percent(share: f64) -> String {
    if share.is_nan() {
        "–".to_owned()
    } else {
        format!("{:.0} %", share * 100.0)
    }
}

pub(crate) fn bytes(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, qps: f64, rep: usize) -> Row {
        let stack: Stack = name.parse().unwrap();
        let outcome = Outcome {
            calls: qps as u64,
            seconds: 1.0,
            p50_us: 100.0,
            p99_us: 200.0,
            p999_us: 300.0,
            server_cpu: 0.5,
            client_cpu: 0.9,
            errors: 0,
        };
        let config = Config {
            in_flight: 256,
            payload: 128,
        };
        Row::new(stack, config, &outcome, 4096, rep)
    }

    #[test]
    fn the_median_is_the_middle_run_by_qps() {
        let runs = [
            row("raw", 900.0, 0),
            row("raw", 1000.0, 1),
            row("raw", 100.0, 2),
            row("tarpc", 5.0, 0),
        ];
        let medians = medians(&runs);
        assert_eq!(medians.len(), 2);
        assert_eq!((medians[0].qps, medians[0].rep), (900.0, 0));
        assert_eq!(medians[1].qps, 5.0);
    }

    #[test]
    fn ratios_take_each_peer_at_its_better_setup() {
        let rows = [
            row("raw", 1000.0, 0),
            row("tether-bincode", 500.0, 0),
            row("tarpc", 100.0, 0),
            row("tarpc-nodelay", 250.0, 0),
        ];
        let configs = [Config {
            in_flight: 256,
            payload: 128,
        }];
        let table = ratios(&rows, &configs);
        let line = table.lines().last().unwrap();
        assert_eq!(
            line,
            "| 256 | 128 B | 0.50 | 1.00 | 1.00 | 2.00 | 1.00 | – | – |"
        );
        assert!(goals(&rows).contains("256 in flight, 128 B: QPS ÷ raw: 0.50 (goal 0.5) — met"));
    }
}
