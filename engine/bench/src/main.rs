//! `stent-bench`: measures the engine end to end and prints one JSON line.
//!
//! ```sh
//! cargo run --release -p stent-bench -- sequential --backend sqlite --n 1000
//! ```
//!
//! Scenarios: `sequential` (one workflow, N trivial steps), `fanout` (one
//! workflow gathering N children), `throughput` (N one-step workflows),
//! `latency` (dispatch → result of a one-step workflow, N times), `replay`
//! (re-run a finished journal of about N events, no storage).

use std::task::{Context as TaskCx, Waker};
use std::time::Duration;

use tokio::time::Instant;

use clap::{Parser, ValueEnum};
use stent::{ExecutionId, Stent};
use stent_journal::{Event, Seq};
use stent_replay::{Driver, Status};

#[stent::durable]
async fn noop(i: u64) -> Result<u64, String> {
    Ok(i)
}

#[stent::durable]
async fn sequential(n: u64) -> Result<u64, String> {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(noop(i).await?);
    }
    Ok(acc)
}

#[stent::durable]
async fn fanout(n: u64) -> Result<u64, String> {
    Stent::gather((0..n).map(noop))
        .await
        .into_iter()
        .sum::<Result<u64, String>>()
}

#[stent::durable]
async fn one_step(i: u64) -> Result<u64, String> {
    noop(i).await
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Scenario {
    Sequential,
    Fanout,
    Throughput,
    Latency,
    Replay,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum BackendKind {
    Sqlite,
    Memory,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the stent engine; prints one JSON line")]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Storage backend (SQLite runs on a fresh file with the default, durable settings).
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendKind,
    /// Problem size.
    #[arg(long, default_value_t = 1000)]
    n: u64,
    /// PostgreSQL URL for `--backend postgres` (each run uses a fresh schema).
    #[arg(
        long,
        env = "STENT_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pg_url: String,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "stent-bench-{}-{}.db",
        std::process::id(),
        ExecutionId::new_random()
    ))
}

async fn executor(
    kind: BackendKind,
    pg_url: &str,
) -> Result<(Stent, Option<std::path::PathBuf>), stent::Error> {
    Ok(match kind {
        BackendKind::Postgres => {
            let schema = format!(
                "stent_bench_{}",
                ExecutionId::new_random().as_uuid().simple()
            );
            let backend = stent::backends::PostgresBackend::builder(pg_url)
                .schema(&schema)
                .build()
                .await?;
            backend.init_db().await?;
            (Stent::new(backend), None)
        }
        BackendKind::Memory => (Stent::new(stent::backends::MemoryBackend::new()), None),
        BackendKind::Sqlite => {
            let path = temp_db();
            let backend = stent::backends::SqliteBackend::open(&path).await?;
            backend.init_db().await?;
            (Stent::new(backend), Some(path))
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (executor, db) = executor(args.backend, &args.pg_url).await?;
    let lifecycle = executor.create_worker_lifecycle(Some("bench"));
    let worker = tokio::spawn(
        executor
            .worker()
            .max_concurrency(args.concurrency)
            .lifecycle(lifecycle.clone())
            .serve(),
    );
    lifecycle.wait_until_ready().await;
    let n = args.n;
    let mut extra = String::new();
    let (seconds, per_sec) = match args.scenario {
        Scenario::Sequential => {
            let t = Instant::now();
            let id = executor.dispatch(sequential(n)).await?;
            executor.wait_for::<u64, String>(id, None).await??;
            let s = t.elapsed().as_secs_f64();
            (s, n as f64 / s)
        }
        Scenario::Fanout => {
            let t = Instant::now();
            let id = executor.dispatch(fanout(n)).await?;
            executor.wait_for::<u64, String>(id, None).await??;
            let s = t.elapsed().as_secs_f64();
            (s, n as f64 / s)
        }
        Scenario::Throughput => {
            // Many clients: every workflow is dispatched and awaited by its
            // own task, as independent callers would.
            let t = Instant::now();
            let mut clients = tokio::task::JoinSet::new();
            for i in 0..n {
                let executor = executor.clone();
                clients.spawn(async move {
                    let id = executor.dispatch(one_step(i)).await?;
                    executor
                        .wait_for::<u64, String>(id, None)
                        .await?
                        .map_err(|e| stent::Error::InvalidConfig(format!("workflow failed: {e}")))
                });
            }
            while let Some(done) = clients.join_next().await {
                done??;
            }
            let s = t.elapsed().as_secs_f64();
            (s, n as f64 / s)
        }
        Scenario::Latency => {
            let mut samples = Vec::with_capacity(n as usize);
            let t = Instant::now();
            for i in 0..n {
                let start = Instant::now();
                let id = executor.dispatch(one_step(i)).await?;
                executor.wait_for::<u64, String>(id, None).await??;
                samples.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            let s = t.elapsed().as_secs_f64();
            samples.sort_by(|a, b| a.total_cmp(b));
            extra = format!(
                ",\"p50_ms\":{:.3},\"p99_ms\":{:.3}",
                percentile(&samples, 0.50),
                percentile(&samples, 0.99)
            );
            (s, n as f64 / s)
        }
        Scenario::Replay => {
            // A finished journal of about n events: n/2 sequential steps.
            let steps = (n / 2).max(1);
            let id = executor.dispatch(sequential(steps)).await?;
            executor.wait_for::<u64, String>(id, None).await??;
            let rows = executor
                .backend()
                .read_journal(id.root_invocation(), Seq(0))
                .await?;
            let events: Vec<Event> = rows
                .iter()
                .map(|r| Event::decode(&r.bytes))
                .collect::<Result<_, _>>()?;
            let Some(Event::Started { function, args, .. }) = events.first().cloned() else {
                return Err("journal does not start with a started event".into());
            };
            let entry = executor.registry().get(&function)?;
            let count = events.len();
            let rounds = (2_000_000 / count.max(1)).clamp(1, 200);
            let t = Instant::now();
            for _ in 0..rounds {
                let mut driver = Driver::new(
                    id.root_invocation(),
                    events.clone(),
                    entry.invoke(args.clone()),
                )?;
                let mut cx = TaskCx::from_waker(Waker::noop());
                match driver.advance(&mut cx) {
                    Status::Finished(Ok(_)) => {}
                    other => return Err(format!("replay did not finish cleanly: {other:?}").into()),
                }
            }
            let s = t.elapsed().as_secs_f64();
            extra = format!(",\"events\":{count},\"rounds\":{rounds}");
            (s, (count * rounds) as f64 / s)
        }
    };
    lifecycle.request_drain();
    tokio::time::timeout(Duration::from_secs(30), worker).await???;
    println!(
        "{{\"scenario\":\"{}\",\"backend\":\"{}\",\"n\":{n},\"seconds\":{seconds:.4},\"per_sec\":{per_sec:.1}{extra}}}",
        format!("{:?}", args.scenario).to_lowercase(),
        format!("{:?}", args.backend).to_lowercase(),
    );
    if let Some(path) = db {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(())
}
