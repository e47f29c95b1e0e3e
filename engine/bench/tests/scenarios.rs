//! Every scenario of `stent-bench` still runs: each is started with a small
//! `--n` on SQLite (the floor included) and must print its JSON line.
//! Measurements are not checked here (see docs/performance.md); only that
//! the benchmark a reader is told to run works.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stent-bench"))
        .args(args)
        .output()
        .expect("start stent-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stent-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_scenario_runs_and_reports() {
    for scenario in [
        "sequential",
        "fanout",
        "throughput",
        "latency",
        "replay",
        "floor",
        "parked",
    ] {
        let line = run(&[scenario, "--backend", "sqlite", "--n", "20"]);
        assert!(
            line.contains(&format!("\"scenario\":\"{scenario}\"")) && line.contains("\"per_sec\":"),
            "{scenario}: {line}"
        );
    }
    let parked = run(&["parked", "--backend", "memory", "--n", "20"]);
    assert!(parked.contains("\"bytes_per_parked\":"), "{parked}");
}

#[test]
fn the_engine_runs_on_a_current_thread_runtime_too() {
    for scenario in ["sequential", "latency", "fanout"] {
        let line = run(&[scenario, "--n", "20", "--runtime", "current"]);
        assert!(
            line.contains("\"runtime\":\"current\"") && line.contains("\"per_sec\":"),
            "{scenario}: {line}"
        );
    }
}

#[test]
fn targets_prints_every_sqlite_line_as_a_table() {
    let table = run(&[
        "targets",
        "--backend",
        "sqlite",
        "--runs",
        "1",
        "--line-n",
        "10",
    ]);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    // The header and six target lines, each with a floor and a met count.
    assert_eq!(rows.len(), 7, "{table}");
    for row in &rows[1..] {
        assert!(row.ends_with("/1 |"), "{row}");
        assert!(!row.contains("| ? |"), "{row}");
    }
    assert!(table.contains("NORMAL, latency p50"), "{table}");
}
