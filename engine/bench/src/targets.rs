//! `stent-bench targets`: every per-step target of docs/performance.md,
//! measured on this machine, as one Markdown table.
//!
//! Each line runs `--runs` times, each run a fresh child process of this
//! binary (the same JSON line a reader gets by hand), one line after the
//! other. A line states its target, the engine's range and median, the
//! storage floor measured in the same process, the engine's ratio to it,
//! what the storage alone allows (a sequential step is one commit of the
//! floor's shape, so the floor's rate; a one-step workflow two commits,
//! its creation and its end), and how many runs met the target.
//!
//! ```sh
//! ./target/release/stent-bench targets --backend sqlite
//! ./target/release/stent-bench targets --backend postgres \
//!     --pg-url "postgres://postgres@127.0.0.1:5432/test?sslmode=require"
//! ```

use std::process::Command;

use serde_json::Value;

/// What a line's target bounds, and in which direction.
#[derive(Clone, Copy)]
enum Goal {
    /// `per_sec` at least this.
    Rate(f64),
    /// `p50_ms` at most this.
    P50(f64),
    /// `seconds` at most this.
    Seconds(f64),
}

/// One line of the table: a scenario with its arguments and its target.
struct Line {
    label: &'static str,
    args: Vec<String>,
    goal: Goal,
    /// Commits of the floor's shape the scenario needs per unit (a step,
    /// a workflow) at the least; `None` where group commit makes units
    /// share commits.
    commits: Option<f64>,
}

/// A line as written in [`SQLITE`] and [`POSTGRES`]: label, scenario, its
/// own problem size, extra arguments, target, floor commits per unit.
type Spec = (
    &'static str,
    &'static str,
    u64,
    &'static [&'static str],
    Goal,
    Option<f64>,
);

const NORMAL: &[&str] = &["--sync", "normal"];
const CURRENT: &[&str] = &["--runtime", "current"];

#[rustfmt::skip]
const SQLITE: &[Spec] = &[
    ("FULL, sequential", "sequential", 1000, &[], Goal::Rate(3200.0), Some(1.0)),
    ("FULL, latency p50", "latency", 1000, &[], Goal::P50(0.6), Some(2.0)),
    ("FULL, throughput", "throughput", 2000, &[], Goal::Rate(3000.0), None),
    ("FULL, fan-out", "fanout", 1000, &[], Goal::Seconds(0.15), None),
    ("NORMAL, sequential", "sequential", 1000, NORMAL, Goal::Rate(6000.0), Some(1.0)),
    ("NORMAL, latency p50", "latency", 1000, NORMAL, Goal::P50(0.3), Some(2.0)),
];

/// Each also gets `--backend postgres --pg-url URL`.
#[rustfmt::skip]
const POSTGRES: &[Spec] = &[
    ("sequential", "sequential", 1000, &[], Goal::Rate(2500.0), Some(1.0)),
    ("sequential, current-thread runtime", "sequential", 1000, CURRENT, Goal::Rate(2500.0), Some(1.0)),
    ("latency p50", "latency", 500, &[], Goal::P50(1.0), Some(2.0)),
    ("fan-out", "fanout", 1000, &[], Goal::Seconds(0.3), None),
];

/// The lines for `backend` (`sqlite` or `postgres`), each with problem size
/// `n` if given, else its own.
fn lines(backend: &str, pg_url: &str, n: Option<u64>) -> Vec<Line> {
    let (specs, backend_args): (&[Spec], Vec<&str>) = match backend {
        "postgres" => (POSTGRES, vec!["--backend", "postgres", "--pg-url", pg_url]),
        _ => (SQLITE, Vec::new()),
    };
    specs
        .iter()
        .map(|&(label, scenario, own, extra, goal, commits)| {
            let size = n.unwrap_or(own).to_string();
            Line {
                label,
                args: [scenario, "--n", &size]
                    .into_iter()
                    .chain(backend_args.iter().copied())
                    .chain(extra.iter().copied())
                    .map(str::to_string)
                    .collect(),
                goal,
                commits,
            }
        })
        .collect()
}

/// Runs the lines and prints the table.
pub(crate) fn run(
    backend: &str,
    pg_url: &str,
    runs: usize,
    n: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let runs = runs.max(1);
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load_before = load_average();
    let mut rows = Vec::new();
    for line in lines(backend, pg_url, n) {
        let mut results = Vec::with_capacity(runs);
        for _ in 0..runs {
            let out = Command::new(&exe).args(&line.args).output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout.lines().last().unwrap_or_default();
            if !out.status.success() {
                return Err(format!(
                    "stent-bench {}: {}",
                    line.args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
                .into());
            }
            results.push(serde_json::from_str::<Value>(last)?);
        }
        rows.push(row(&line, &results));
    }
    println!(
        "{cores} cores, load average {load_before} before and {} after; {} runs per line; stent-bench {}",
        load_average(),
        runs,
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    );
    println!();
    println!(
        "| {} | target | engine | floor, tx/s | of floor | storage alone | met |",
        title(backend, pg_url)
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// The table's first header cell: the backend, and for PostgreSQL whether
/// the URL asks for TLS.
fn title(backend: &str, pg_url: &str) -> String {
    let tls = [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
    ]
    .iter()
    .any(|mode| pg_url.contains(mode));
    match backend {
        "postgres" if tls => "PostgreSQL, TLS".to_string(),
        "postgres" => "PostgreSQL".to_string(),
        _ => "SQLite".to_string(),
    }
}

/// One Markdown row for `line` from its runs' JSON lines.
fn row(line: &Line, results: &[Value]) -> String {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let all = |k: &str| -> Vec<f64> { results.iter().filter_map(|v| num(v, k)).collect() };
    let (field, target, unit, at_least) = match line.goal {
        Goal::Rate(t) => ("per_sec", t, "/s", true),
        Goal::P50(t) => ("p50_ms", t, " ms", false),
        Goal::Seconds(t) => ("seconds", t, " s", false),
    };
    let values = all(field);
    let floors = all("floor_per_sec");
    let met = values
        .iter()
        .filter(|&&v| if at_least { v >= target } else { v <= target })
        .count();
    let of_floor = match line.goal {
        Goal::P50(_) => spread(&all("p50_floor_commits"), 2).map(|s| format!("{s} floor commits")),
        _ => spread(&all("of_floor"), 2),
    };
    // What the storage alone allows: `commits` floor transactions per unit.
    let storage = match (line.commits, median(&floors)) {
        (Some(commits), Some(floor)) => match line.goal {
            Goal::P50(_) => format!(
                "{commits} floor commits: {:.3} ms",
                commits * 1000.0 / floor
            ),
            _ => format!("{:.0}/s", floor / commits),
        },
        _ => "– (group commit)".to_string(),
    };
    let digits = if matches!(line.goal, Goal::Rate(_)) {
        0
    } else {
        3
    };
    format!(
        "| {} | {} {target}{unit} | {} | {} | {} | {storage} | {met}/{} |",
        line.label,
        if at_least { "≥" } else { "≤" },
        spread(&values, digits).unwrap_or_else(|| "?".into()),
        spread(&floors, 0).unwrap_or_else(|| "–".into()),
        of_floor.unwrap_or_else(|| "–".into()),
        values.len(),
    )
}

/// `min–max (median m)` with `digits` decimals (one run: its value), or
/// `None` for no values.
fn spread(values: &[f64], digits: usize) -> Option<String> {
    let sorted = sorted(values);
    let (first, last) = (sorted.first()?, sorted.last()?);
    let m = median_of_sorted(&sorted)?;
    Some(if sorted.len() == 1 {
        format!("{m:.digits$}")
    } else {
        format!("{first:.digits$}–{last:.digits$} (median {m:.digits$})")
    })
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

fn median(values: &[f64]) -> Option<f64> {
    median_of_sorted(&sorted(values))
}

fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The 1-minute load average (Linux), or `?`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_counts_the_runs_that_met_the_target_and_what_the_floor_allows() {
        let line = Line {
            label: "FULL, sequential",
            args: Vec::new(),
            goal: Goal::Rate(3200.0),
            commits: Some(1.0),
        };
        let runs: Vec<Value> = [(3300.0, 3000.0), (2900.0, 3100.0), (3250.0, 2900.0)]
            .iter()
            .map(|(rate, floor)| {
                serde_json::json!({"per_sec": rate, "floor_per_sec": floor, "of_floor": rate / floor})
            })
            .collect();
        let r = row(&line, &runs);
        assert!(r.contains("| 2/3 |"), "{r}");
        assert!(r.contains("2900–3300 (median 3250)"), "{r}");
        assert!(r.contains("0.94–1.12 (median 1.10)"), "{r}");
        assert!(r.contains("| 3000/s |"), "{r}");
    }

    #[test]
    fn a_latency_row_states_two_floor_commits() {
        let line = Line {
            label: "latency",
            args: Vec::new(),
            goal: Goal::P50(0.6),
            commits: Some(2.0),
        };
        let runs = vec![
            serde_json::json!({"p50_ms": 0.75, "floor_per_sec": 2500.0, "p50_floor_commits": 1.875}),
        ];
        let r = row(&line, &runs);
        assert!(r.contains("| 0/1 |"), "{r}");
        assert!(r.contains("2 floor commits: 0.800 ms"), "{r}");
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(
            title("postgres", "postgres://h/db?sslmode=require"),
            "PostgreSQL, TLS"
        );
        assert_eq!(title("postgres", "postgres://h/db"), "PostgreSQL");
    }
}
