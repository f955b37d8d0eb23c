//! The benchmark end to end, briefly: every stack serves and answers in its own process, the
//! report and the JSON come out, and the idle connections stay up on heartbeats. Nothing here
//! looks at how fast anything was.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_stack_answers_and_the_report_comes_out() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args(["--in-flight", "32", "--seconds", "0.3", "--warmup", "0.1"])
        .args(["--idle-connections", "200", "--idle-seconds", "1"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running tether-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("valid JSON");
    let rows = report["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|row| row["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "raw",
            "tether-bincode",
            "tether-postcard",
            "tether-msgpack",
            "tether-cbor",
            "tether-json",
            "tarpc",
            "tarpc-nodelay",
            "tonic",
        ]
    );
    for row in rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["qps"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["server_rss_kib"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(
            (row["in_flight"].as_u64(), row["payload"].as_u64()),
            (Some(32), Some(128))
        );
    }
    assert_eq!(report["idle"]["connections"], 200);
    assert_eq!(report["idle"]["ready_at_end"], 200, "{}", report["idle"]);

    // The markdown report: the table, tether's ratios and the goals.
    assert!(
        stdout.contains("| 32 | 128 B | tether-bincode |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| in flight | payload | ÷ raw QPS |"),
        "{stdout}"
    );
    assert!(stdout.contains("idle connections"), "{stdout}");
}
