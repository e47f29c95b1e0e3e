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
//!
//! `floor` measures the storage alone: `--n` transactions shaped like one
//! sequential step's commit (the same rows, tables and indexes), each one
//! SQL script, no engine (see `floor.rs`). Every other scenario measures the
//! floor first (1,000 transactions, on a fresh database of the same kind)
//! and its line carries `floor_per_sec` and `of_floor` (its own rate over
//! the floor's; for `latency`, `p50_floor_commits`: the p50 in floor
//! commits), so runs on machines of different speed compare.
//!
//! `--sync full|normal` sets SQLite's `synchronous` (default `full`).
//!
//! `targets` runs every per-step target line of `--backend` five times
//! (`--runs`) and prints them as one Markdown table (see `targets.rs`).
//!
//! On PostgreSQL the line ends with `group_commit`: `[calls, batches]` of
//! this process's commits, execution creations and execution reads.
//!
//! `--notifier` picks how idle workers and waiters are woken (`in-process`,
//! `none`, `postgres`, `redis`). `--worker-processes N` (PostgreSQL) runs
//! the workers in N child processes of this binary (`stent-bench serve`)
//! instead of in this one, which then only dispatches and waits:
//!
//! ```sh
//! cargo run --release -p stent-bench -- throughput --backend postgres \
//!     --worker-processes 4 --notifier postgres --n 4000
//! ```

use std::task::{Context as TaskCx, Waker};
use std::time::Duration;

use tokio::time::Instant;

use clap::{Parser, ValueEnum};

mod floor;
mod targets;
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

#[stent::durable]
async fn parked(i: u64) -> Result<u64, String> {
    let go: u64 = Stent::wait_for_signal("go")
        .await
        .map_err(|e| e.to_string())?;
    Ok(i.wrapping_add(go))
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Scenario {
    Sequential,
    Fanout,
    Throughput,
    Latency,
    Replay,
    /// The storage alone: step-shaped transactions, no engine.
    Floor,
    /// N workflows each waiting for a signal: the process's resident memory
    /// per parked execution (`bytes_per_parked`), then the time to signal
    /// them all and collect their results (`per_sec`).
    Parked,
    /// Not a measurement: serve the PostgreSQL `--schema` until killed (the
    /// child processes of `--worker-processes`).
    Serve,
    /// Every per-step target of `--backend` (sqlite or postgres), each line
    /// `--runs` times, as a Markdown table with the floor and what bounds
    /// each line.
    Targets,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum SyncKind {
    Full,
    Normal,
}

impl SyncKind {
    fn backend(self) -> stent::backends::Synchronous {
        match self {
            SyncKind::Full => stent::backends::Synchronous::Full,
            SyncKind::Normal => stent::backends::Synchronous::Normal,
        }
    }

    fn sqlx(self) -> sqlx::sqlite::SqliteSynchronous {
        match self {
            SyncKind::Full => sqlx::sqlite::SqliteSynchronous::Full,
            SyncKind::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        }
    }
}

/// Transactions of the floor measured before each scenario.
const FLOOR_N: u32 = 1_000;

/// The tokio runtime the benchmark (engine and workers) runs on.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum RuntimeKind {
    /// `new_multi_thread`, one worker thread per core (`#[tokio::main]`).
    Multi,
    /// `new_current_thread`: every task on the calling thread, no hand-off
    /// between tokio's workers.
    Current,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum NotifierKind {
    InProcess,
    None,
    Postgres,
    Redis,
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
    /// How idle workers and waiters are woken.
    #[arg(long, value_enum, default_value = "in-process")]
    notifier: NotifierKind,
    /// Redis URL for `--notifier redis`.
    #[arg(
        long,
        env = "STENT_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Run the workers in this many child processes (PostgreSQL only); 0:
    /// one worker in this process.
    #[arg(long, default_value_t = 0)]
    worker_processes: usize,
    /// The PostgreSQL schema to use (default: a fresh one per run).
    #[arg(long)]
    schema: Option<String>,
    /// Connections of the PostgreSQL pool (per process).
    #[arg(long, default_value_t = 10)]
    pg_connections: u32,
    /// Shortest interval between `wait_for` polls, in ms (the executor's
    /// `poll_min_interval`). With a notifier the polls are only a fallback:
    /// a longer interval saves the database a read per waiter per interval.
    #[arg(long, default_value_t = 100)]
    wait_poll_ms: u64,
    /// SQLite's `PRAGMA synchronous`: `full` (every commit on disk, the
    /// default) or `normal` (WAL: safe across a process crash, not a power
    /// loss).
    #[arg(long, value_enum, default_value = "full")]
    sync: SyncKind,
    /// The tokio runtime: `multi` (a worker thread per core, the default)
    /// or `current` (one thread).
    #[arg(long, value_enum, default_value = "multi")]
    runtime: RuntimeKind,
    /// `targets`: runs of each line.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// `targets`: the problem size of every line (default: each line's own,
    /// as in docs/performance.md).
    #[arg(long)]
    line_n: Option<u64>,
}

fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "stent-bench-{}-{}.db",
        std::process::id(),
        ExecutionId::new_random()
    ))
}

/// A fresh SQLite file in the temp directory with stent's schema, at
/// `--sync`.
async fn fresh_sqlite(
    args: &Args,
) -> Result<(std::path::PathBuf, stent::backends::SqliteBackend), stent::Error> {
    let path = temp_db();
    let backend = stent::backends::SqliteBackend::builder(&path)
        .synchronous(args.sync.backend())
        .build()
        .await?;
    backend.init_db().await?;
    Ok((path, backend))
}

/// What a run works on.
struct Setup {
    executor: Stent,
    /// The SQLite file to delete afterwards.
    db: Option<std::path::PathBuf>,
    /// The PostgreSQL schema in use.
    schema: Option<String>,
    /// The PostgreSQL backend (for its group-commit counts).
    postgres: Option<stent::backends::PostgresBackend>,
}

async fn executor(args: &Args) -> Result<Setup, stent::Error> {
    use stent::notifications::{InProcessNotifier, NoNotifications, RedisNotifier};
    let notify = |builder: stent::StentBuilder,
                  pg: Option<&stent::backends::PostgresBackend>|
     -> Result<Stent, stent::Error> {
        let builder = builder.poll_min_interval(Duration::from_millis(args.wait_poll_ms));
        Ok(match args.notifier {
            NotifierKind::InProcess => builder.notification_backend(InProcessNotifier),
            NotifierKind::None => builder.notification_backend(NoNotifications),
            NotifierKind::Redis => {
                builder.notification_backend(RedisNotifier::new(&args.redis_url)?)
            }
            NotifierKind::Postgres => match pg {
                Some(b) => {
                    builder.notification_backend(stent::notifications::PostgresNotifier::new(b))
                }
                None => {
                    return Err(stent::Error::InvalidConfig(
                        "--notifier postgres needs --backend postgres".into(),
                    ));
                }
            },
        }
        .build())
    };
    Ok(match args.backend {
        BackendKind::Postgres => {
            let schema = args.schema.clone().unwrap_or_else(|| {
                format!(
                    "stent_bench_{}",
                    ExecutionId::new_random().as_uuid().simple()
                )
            });
            let backend = stent::backends::PostgresBackend::builder(&args.pg_url)
                .schema(&schema)
                .max_connections(args.pg_connections)
                .build()
                .await?;
            backend.init_db().await?;
            let executor = notify(Stent::builder(backend.clone()), Some(&backend))?;
            Setup {
                executor,
                db: None,
                schema: Some(schema),
                postgres: Some(backend),
            }
        }
        BackendKind::Memory => Setup {
            executor: notify(Stent::builder(stent::backends::MemoryBackend::new()), None)?,
            db: None,
            schema: None,
            postgres: None,
        },
        BackendKind::Sqlite => {
            let (path, backend) = fresh_sqlite(args).await?;
            Setup {
                executor: notify(Stent::builder(backend), None)?,
                db: Some(path),
                schema: None,
                postgres: None,
            }
        }
    })
}

/// The floor's commits per second, on a fresh database of `args`'s kind
/// (`None` on the memory backend, which has no storage to measure).
async fn measure_floor(args: &Args, n: u32) -> Result<Option<f64>, Box<dyn std::error::Error>> {
    let took = match args.backend {
        BackendKind::Memory => return Ok(None),
        BackendKind::Sqlite => {
            let (path, backend) = fresh_sqlite(args).await?;
            drop(backend);
            let took = floor::measure(
                floor::Target::Sqlite {
                    path: &path,
                    synchronous: args.sync.sqlx(),
                },
                n,
            )
            .await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            took?
        }
        BackendKind::Postgres => {
            let schema = format!(
                "stent_bench_floor_{}",
                ExecutionId::new_random().as_uuid().simple()
            );
            let backend = stent::backends::PostgresBackend::builder(&args.pg_url)
                .schema(&schema)
                .max_connections(1)
                .build()
                .await?;
            backend.init_db().await?;
            let took = floor::measure(
                floor::Target::Postgres {
                    url: &args.pg_url,
                    schema: &schema,
                },
                n,
            )
            .await;
            drop_schema(&backend, &schema).await?;
            took?
        }
    };
    Ok(Some(f64::from(n) / took.as_secs_f64()))
}

fn cli_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// This process's resident memory in bytes (Linux: `/proc/self/statm`,
/// pages of 4 KiB), or `None` where that cannot be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.scenario == Scenario::Targets {
        let backend = cli_name(args.backend);
        return targets::run(&backend, &args.pg_url, args.runs, args.line_n);
    }
    let runtime = match args.runtime {
        RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread(),
        RuntimeKind::Current => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.scenario == Scenario::Floor {
        let n = u32::try_from(args.n)?;
        let per_sec = measure_floor(&args, n)
            .await?
            .ok_or("the memory backend has no storage floor")?;
        println!(
            "{{\"scenario\":\"floor\",\"backend\":\"{}\",\"sync\":\"{}\",\"runtime\":\"{}\",\"n\":{n},\"seconds\":{:.4},\"per_sec\":{per_sec:.1}}}",
            format!("{:?}", args.backend).to_lowercase(),
            cli_name(args.sync),
            cli_name(args.runtime),
            f64::from(n) / per_sec,
        );
        return Ok(());
    }
    // The floor first, in the same process, so the line compares.
    let floor_per_sec = if args.scenario == Scenario::Serve {
        None
    } else {
        measure_floor(&args, FLOOR_N).await?
    };
    let Setup {
        executor,
        db,
        schema,
        postgres,
    } = executor(&args).await?;
    if args.scenario == Scenario::Serve {
        executor
            .worker()
            .max_concurrency(args.concurrency)
            .serve()
            .await?;
        return Ok(());
    }
    let mut children = Vec::new();
    if args.worker_processes > 0 {
        let Some(schema) = &schema else {
            return Err("--worker-processes needs --backend postgres".into());
        };
        let exe = std::env::current_exe()?;
        for _ in 0..args.worker_processes {
            children.push(
                tokio::process::Command::new(&exe)
                    .arg("serve")
                    .args(["--backend", "postgres", "--schema", schema])
                    .args(["--pg-url", &args.pg_url, "--redis-url", &args.redis_url])
                    .arg("--notifier")
                    .arg(cli_name(args.notifier))
                    .args(["--concurrency", &args.concurrency.to_string()])
                    .args(["--pg-connections", &args.pg_connections.to_string()])
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        // Let them connect and start polling before the clock starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lifecycle = executor.create_worker_lifecycle(Some("bench"));
    let worker = (args.worker_processes == 0).then(|| {
        tokio::spawn(
            executor
                .worker()
                .max_concurrency(args.concurrency)
                .lifecycle(lifecycle.clone())
                .serve(),
        )
    });
    if worker.is_some() {
        lifecycle.wait_until_ready().await;
    }
    let n = args.n;
    let mut extra = String::new();
    let mut latency_p50 = None;
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
            latency_p50 = Some(percentile(&samples, 0.50));
            extra = format!(
                ",\"p50_ms\":{:.3},\"p99_ms\":{:.3}",
                percentile(&samples, 0.50),
                percentile(&samples, 0.99)
            );
            (s, n as f64 / s)
        }
        Scenario::Parked => {
            let before = resident_bytes();
            let mut ids = Vec::with_capacity(n as usize);
            for i in 0..n {
                ids.push(executor.dispatch(parked(i)).await?);
            }
            // Parked: every execution's task waits for its signal.
            loop {
                let stats = executor.stats().await?;
                let waiting = stats
                    .tasks
                    .iter()
                    .find(|(state, _)| *state == stent::records::TaskState::Waiting)
                    .map_or(0, |(_, count)| *count);
                if waiting >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = resident_bytes();
            let t = Instant::now();
            for &id in &ids {
                executor.send_signal(id, "go", &1u64).await?;
            }
            for &id in &ids {
                executor.wait_for::<u64, String>(id, None).await??;
            }
            let s = t.elapsed().as_secs_f64();
            if let (Some(before), Some(after)) = (before, after) {
                extra = format!(
                    ",\"rss_before\":{before},\"rss_parked\":{after},\"bytes_per_parked\":{:.0}",
                    (after as f64 - before as f64) / n.max(1) as f64
                );
            }
            (s, n as f64 / s)
        }
        Scenario::Serve | Scenario::Targets => {
            return Err("serve and targets run no measurement here".into());
        }
        Scenario::Floor => return Err("the floor is measured above".into()),
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
    if let Some(pg) = &postgres {
        // This process's calls only: with --worker-processes, its creations
        // and reads (the workers' commits are counted in their processes).
        let stats = pg.group_commit_stats();
        extra += &format!(
            ",\"group_commit\":{{\"commits\":[{},{}],\"creates\":[{},{}],\"reads\":[{},{}]}}",
            stats.commits.calls,
            stats.commits.batches,
            stats.creates.calls,
            stats.creates.batches,
            stats.reads.calls,
            stats.reads.batches
        );
    }
    if let Some(floor) = floor_per_sec {
        extra += &format!(
            ",\"floor_per_sec\":{floor:.1},\"of_floor\":{:.3}",
            per_sec / floor
        );
        if let Some(p50) = latency_p50 {
            extra += &format!(",\"p50_floor_commits\":{:.2}", p50 / (1000.0 / floor));
        }
    }
    lifecycle.request_drain();
    if let Some(worker) = worker {
        tokio::time::timeout(Duration::from_secs(30), worker).await???;
    }
    for mut child in children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    println!(
        "{{\"scenario\":\"{}\",\"backend\":\"{}\",\"sync\":\"{}\",\"runtime\":\"{}\",\"notifier\":\"{}\",\"worker_processes\":{},\"n\":{n},\"seconds\":{seconds:.4},\"per_sec\":{per_sec:.1}{extra}}}",
        format!("{:?}", args.scenario).to_lowercase(),
        format!("{:?}", args.backend).to_lowercase(),
        cli_name(args.sync),
        cli_name(args.runtime),
        cli_name(args.notifier),
        args.worker_processes,
    );

    if let Some(path) = db {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    // A schema this run made is dropped, as the floor's is: left behind,
    // hundreds of them (and the dead rows they leave in the catalog when
    // autovacuum is off) slow every later run's connections and DDL.
    if let (Some(pg), Some(schema), None) = (&postgres, &schema, &args.schema) {
        drop_schema(pg, schema).await?;
    }
    Ok(())
}

/// Drops a schema a run made, with everything in it.
async fn drop_schema(
    backend: &stent::backends::PostgresBackend,
    schema: &str,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(backend.pool())
    .await
    .map(|_| ())
}
