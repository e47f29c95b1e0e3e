//! Many worker processes on one PostgreSQL schema: four `stent-pg-worker`
//! processes serve 1,000 executions of a five-step workflow; one of them is
//! SIGKILLed at a random point of the run and a replacement is started.
//! Every execution must complete with the right result, no step whose
//! result was journaled may run again (each step body records its runs, and
//! the worker process, in a side table), and every journal must hold each
//! result exactly once.
//!
//! Skipped without a server unless `STENT_REQUIRE_SERVICES=1`, which makes
//! a missing server a failure. The random choices (which worker, when)
//! come from a seed printed at the start; `STENT_TEST_SEED=<n>` replays one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::Row;
use stent::backends::PostgresBackend;
use stent::notifications::PostgresNotifier;
use stent::{ExecutionId, Stent};
use stent_journal::Seq;
use stent_journal::event::Event;
use stent_tests::fleet::{CREATE_STEP_RUNS, expected, fleet_flow};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const WORKERS: usize = 4;
const EXECUTIONS: u64 = 1000;
const STEPS: u32 = 5;
/// The run must end within this (it takes a fraction of it).
const LIMIT: Duration = Duration::from_secs(120);

fn pg_url() -> String {
    stent_test_services::pg_url()
}

async fn backend(schema: &str) -> Option<PostgresBackend> {
    let url = pg_url();
    if !stent_test_services::available("PostgreSQL", &url) {
        return None;
    }
    let b = PostgresBackend::builder(&url)
        .schema(schema)
        .max_connections(8)
        .build()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} answers but: {e}"));
    b.init_db().await.expect("init_db");
    Some(b)
}

struct Worker {
    child: Child,
    pid: u32,
    name: String,
}

fn spawn_worker(schema: &str, dir: &Path, name: &str) -> Worker {
    spawn_worker_on(&pg_url(), schema, dir, name, &[])
}

/// A `stent-pg-worker` on `url`, with `env` (its lease settings) set.
fn spawn_worker_on(
    url: &str,
    schema: &str,
    dir: &Path,
    name: &str,
    env: &[(&str, String)],
) -> Worker {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("worker log");
    let child = Command::new(env!("CARGO_BIN_EXE_stent-pg-worker"))
        .arg(url)
        .arg(schema)
        .arg(name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn stent-pg-worker");
    let pid = child.id().expect("worker pid");
    Worker {
        child,
        pid,
        name: name.to_string(),
    }
}

/// A small deterministic generator (splitmix64) for the test's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn finished(backend: &PostgresBackend) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM executions WHERE status IN ('completed', 'failed', 'paused', 'cancelled', 'timed_out')",
    )
    .fetch_one(backend.pool())
    .await
    .expect("count finished executions")
}

fn worker_logs(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            out += &format!("--- {}\n", e.path().display());
            for line in tail.into_iter().rev() {
                out += line;
                out += "\n";
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_survive_a_sigkill() {
    let seed = std::env::var("STENT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| ExecutionId::new_random().as_uuid().as_u64_pair().0);
    eprintln!("multiprocess seed: {seed} (STENT_TEST_SEED={seed} replays the choices)");
    let mut rng = Rng(seed);
    let schema = format!(
        "stent_multiprocess_{}",
        ExecutionId::new_random().as_uuid().simple()
    );
    let Some(backend) = backend(&schema).await else {
        return;
    };
    sqlx::query(CREATE_STEP_RUNS)
        .execute(backend.pool())
        .await
        .expect("create step_runs");
    let dir: PathBuf = std::env::temp_dir().join(&schema);
    std::fs::create_dir_all(&dir).expect("log dir");

    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|i| spawn_worker(&schema, &dir, &format!("worker-{i}")))
        .collect();

    // A client process of its own: dispatches, never runs workflows.
    let client = Stent::builder(backend.clone())
        .notification_backend(PostgresNotifier::new(&backend))
        .build();
    let start = Instant::now();
    // Kill one worker once a random share of the executions has finished,
    // while the dispatches are still going on.
    let kill_after = 50 + rng.below(EXECUTIONS * 6 / 10) as i64;
    let victim = workers.remove(rng.below(WORKERS as u64) as usize);
    let killer = {
        let backend = backend.clone();
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut victim = victim;
            while finished(&backend).await < kill_after {
                assert!(
                    start.elapsed() < LIMIT,
                    "stuck before the kill\n{}",
                    worker_logs(&dir)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            victim.child.start_kill().expect("SIGKILL");
            victim.child.wait().await.expect("reap the killed worker");
            let at = finished(&backend).await;
            eprintln!(
                "SIGKILLed {} (pid {}) with {at} of {EXECUTIONS} executions finished",
                victim.name, victim.pid
            );
            victim
        })
    };
    let mut ids = Vec::with_capacity(EXECUTIONS as usize);
    for i in 0..EXECUTIONS {
        ids.push(client.dispatch(fleet_flow(i, STEPS)).await.unwrap());
    }
    let killed = killer.await.expect("the killer task");
    workers.push(spawn_worker(&schema, &dir, "worker-replacement"));

    while finished(&backend).await < EXECUTIONS as i64 {
        assert!(
            start.elapsed() < LIMIT,
            "not every execution finished within {LIMIT:?}\n{}",
            worker_logs(&dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    eprintln!(
        "{EXECUTIONS} executions of {STEPS} steps in {took:?} with {WORKERS} worker processes"
    );
    for mut w in workers {
        let _ = w.child.start_kill();
        let _ = w.child.wait().await;
    }

    let report = check_fleet(&backend, &client, &ids, Some(killed.pid), &dir).await;
    eprintln!(
        "{} step runs; {} steps ran more than once before their result was journaled \
         ({} of them after the kill)",
        report.step_runs, report.reruns, report.reruns_after_kill
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(backend.pool())
    .await
    .expect("drop schema");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What [`check_fleet`] counted.
struct FleetReport {
    step_runs: usize,
    /// Steps whose body ran more than once (each time before its result
    /// was journaled).
    reruns: usize,
    /// Of those, the ones the killed process ran.
    reruns_after_kill: usize,
}

/// Checks the outcome of a fleet run: every execution completed with the
/// right result; no step body began after its result was journaled; every
/// root journal holds each step's result once and one terminal event; every
/// task is done. `killed`: the pid of a worker killed during the run.
async fn check_fleet(
    backend: &PostgresBackend,
    client: &Stent,
    ids: &[ExecutionId],
    killed: Option<u32>,
    dir: &Path,
) -> FleetReport {
    // Every execution completed with the right result.
    for (i, id) in ids.iter().enumerate() {
        let out = client
            .result_of::<u64, String>(*id)
            .await
            .unwrap_or_else(|e| panic!("execution {i} ({id}): {e}\n{}", worker_logs(dir)));
        assert_eq!(out, Ok(expected(i as u64, STEPS)), "execution {i} ({id})");
    }

    // Step bodies: each ran at least once, and never after its result was
    // journaled. A body may run twice only when its first run's result was
    // never stored: the killed process, or a lease that ran out under load
    // (then the run's commit is fenced out). Each run records when it
    // started; the step's `completed` event records when it was journaled
    // (both on this host's clock).
    let rows = sqlx::query("SELECT workflow, step, pid, started_ms FROM step_runs ORDER BY id")
        .fetch_all(backend.pool())
        .await
        .expect("read step_runs");
    let mut runs: HashMap<(u64, u32), Vec<(i64, i64)>> = HashMap::new();
    for r in &rows {
        let (w, s): (i64, i32) = (r.get("workflow"), r.get("step"));
        runs.entry((w as u64, s as u32))
            .or_default()
            .push((r.get("pid"), r.get("started_ms")));
    }
    let completed: HashMap<String, i64> = sqlx::query(
        "SELECT invocation_id::text AS invocation_id, recorded_at FROM journal \
         WHERE kind = 'completed'",
    )
    .fetch_all(backend.pool())
    .await
    .expect("read completions")
    .iter()
    .map(|r| (r.get("invocation_id"), r.get("recorded_at")))
    .collect();
    let killed_pid = killed.map(i64::from);
    let (mut reruns, mut reruns_after_kill) = (0, 0);
    for (w, id) in ids.iter().enumerate() {
        let journal = client
            .backend()
            .read_journal(id.root_invocation(), Seq(0))
            .await
            .expect("read journal");
        let children: Vec<stent::InvocationId> = journal
            .iter()
            .filter_map(|row| match Event::decode(&row.bytes) {
                Ok(Event::CallScheduled { child, .. }) => Some(child),
                _ => None,
            })
            .collect();
        assert_eq!(
            children.len(),
            STEPS as usize,
            "workflow {w}: steps scheduled"
        );
        for (s, child) in children.iter().enumerate() {
            let pids = runs.get(&(w as u64, s as u32)).cloned().unwrap_or_default();
            assert!(!pids.is_empty(), "step {s} of workflow {w} never ran");
            let done = *completed
                .get(&child.as_uuid().to_string())
                .unwrap_or_else(|| panic!("step {s} of workflow {w}: no completed event"));
            // A run that began after the result was journaled is a run
            // again. The earliest run is the one that produced it, whatever
            // the two clocks say: the body's start is the host's wall clock
            // (`SystemTime`), the journal's stamp the engine's clock (wall
            // time read once at start, then advanced by tokio's monotonic
            // clock), and the two can disagree by more than rounding (by
            // 23 ms once in CI, with the step run once).
            let first = pids.iter().map(|(_, started)| *started).min();
            for (pid, started) in pids.iter().filter(|(_, s)| Some(*s) != first) {
                // 1 ms of slack: the two clocks round differently.
                assert!(
                    *started <= done + 1,
                    "step {s} of workflow {w} ran again (pid {pid}, at {started} ms) after \
                     its result was journaled at {done} ms: {pids:?}"
                );
            }
            if pids.len() > 1 {
                reruns += 1;
                if pids.iter().any(|(p, _)| Some(*p) == killed_pid) {
                    reruns_after_kill += 1;
                }
            }
        }
    }

    // Journals: each root holds every step's result once and one terminal
    // event; no invocation has two terminal events or two results for one
    // call.
    for (i, id) in ids.iter().enumerate() {
        let kinds: Vec<String> = client
            .backend()
            .read_journal(id.root_invocation(), Seq(0))
            .await
            .expect("read journal")
            .into_iter()
            .map(|r| r.kind)
            .collect();
        let results = kinds.iter().filter(|k| *k == "call_completed").count();
        assert_eq!(results, STEPS as usize, "execution {i}: {kinds:?}");
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("completed"),
            "execution {i}: {kinds:?}"
        );
    }
    let doubled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT invocation_id FROM journal \
         WHERE kind IN ('completed', 'failed') GROUP BY invocation_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(backend.pool())
    .await
    .expect("count doubled terminals");
    assert_eq!(doubled, 0, "invocations with two terminal events");
    let terminals: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE kind = 'completed'")
            .fetch_one(backend.pool())
            .await
            .expect("count terminals");
    assert_eq!(terminals, ids.len() as i64 * (1 + i64::from(STEPS)));
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state <> 'done'")
        .fetch_one(backend.pool())
        .await
        .expect("count open tasks");
    assert_eq!(open, 0, "tasks left unfinished");

    FleetReport {
        step_runs: rows.len(),
        reruns,
        reruns_after_kill,
    }
}

/// Executions the PostgreSQL restart test runs.
const RESTART_EXECUTIONS: u64 = 1000;
/// Leases of the restart test's workers: shorter than each outage, so every
/// lease held when the server went away lapses. `STENT_RESTART_LEASE_MS`
/// sets another (to try shorter ones by hand).
fn restart_lease() -> Duration {
    std::env::var("STENT_RESTART_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis)
}
/// How long the server stays down at each restart.
const DOWN_FOR: Duration = Duration::from_secs(3);

/// The count of finished executions, `None` while the server is away.
async fn try_finished(backend: &PostgresBackend) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM executions WHERE status IN ('completed', 'failed', 'paused', 'cancelled', 'timed_out')",
    )
    .fetch_one(backend.pool())
    .await
    .ok()
}

/// PostgreSQL itself goes away under four worker processes running 1,000
/// five-step executions: a private server is restarted twice `-m fast` and
/// twice `-m immediate` (a crash: every connection dropped, in-flight
/// commits lost or landed without a reply), each time staying down for
/// longer than a lease, while a client keeps dispatching (under keys, so a
/// dispatch whose reply was lost is simply sent again). The workers are not
/// restarted. Every execution must complete with the right result, no step
/// may run again after its result was journaled, nothing may be
/// dead-lettered or paused, and the server may detect no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_survive_postgres_restarts() {
    use stent_tests::pg_server::{PgServer, StopMode};

    let server = match PgServer::start_with(&[("max_connections", "200")]).await {
        Ok(server) => server,
        Err(e) => {
            stent_test_services::skip("a private PostgreSQL server", &e.to_string());
            return;
        }
    };
    let url = server.url("test");
    let schema = "stent_restart";
    let backend = PostgresBackend::builder(&url)
        .schema(schema)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect to the private server");
    backend.init_db().await.expect("init_db");
    sqlx::query(CREATE_STEP_RUNS)
        .execute(backend.pool())
        .await
        .expect("create step_runs");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "stent_restart_{}",
        ExecutionId::new_random().as_uuid().simple()
    ));
    std::fs::create_dir_all(&dir).expect("log dir");
    let lease_duration = restart_lease();
    let lease = [
        (
            "STENT_WORKER_LEASE_MS",
            lease_duration.as_millis().to_string(),
        ),
        (
            "STENT_WORKER_HEARTBEAT_MS",
            (lease_duration / 4).as_millis().to_string(),
        ),
    ];
    let workers: Vec<Worker> = (0..WORKERS)
        .map(|i| spawn_worker_on(&url, schema, &dir, &format!("worker-{i}"), &lease))
        .collect();
    let client = Stent::builder(backend.clone())
        .notification_backend(PostgresNotifier::new(&backend))
        .build();
    let start = Instant::now();

    // The client dispatches throughout, slowly enough for the restarts to
    // land among the dispatches.
    let dispatcher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(RESTART_EXECUTIONS as usize);
            let mut retried = 0u32;
            for i in 0..RESTART_EXECUTIONS {
                let key = format!("restart-{i}");
                loop {
                    match client.dispatch(fleet_flow(i, STEPS)).key(&key).await {
                        Ok(id) => {
                            ids.push(id);
                            break;
                        }
                        Err(_) => {
                            retried += 1;
                            assert!(start.elapsed() < LIMIT, "dispatch kept failing");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            (ids, retried)
        })
    };

    // Restart when a share of the executions has finished.
    let plan = [
        (150, StopMode::Fast),
        (350, StopMode::Immediate),
        (600, StopMode::Immediate),
        (800, StopMode::Fast),
    ];
    let mut deadlocks_lost_on_crash = 0i64;
    let mut recoveries = Vec::new();
    for (at, mode) in plan {
        loop {
            let done = try_finished(&backend).await.unwrap_or(0);
            if done >= at {
                break;
            }
            assert!(
                start.elapsed() < LIMIT,
                "stuck at {done} finished before the restart at {at}\n{}",
                worker_logs(&dir)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if mode == StopMode::Immediate {
            // Statistics do not survive a crash: count this run's so far.
            deadlocks_lost_on_crash += deadlocks(&backend).await;
        }
        server.stop(mode).await.expect("stop the server");
        tokio::time::sleep(DOWN_FOR).await;
        server.start_again().await.expect("start the server again");
        // From the moment the server accepts connections again until the
        // first execution completes after it.
        let back = Instant::now();
        let before = loop {
            if let Some(done) = try_finished(&backend).await {
                break done;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        loop {
            if try_finished(&backend).await.unwrap_or(0) > before {
                break;
            }
            assert!(
                back.elapsed() < LIMIT,
                "nothing finished after the {mode:?} restart\n{}\n{}",
                worker_logs(&dir),
                server.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        recoveries.push((mode, before, back.elapsed()));
    }
    let (ids, dispatch_retries) = dispatcher.await.expect("the dispatcher");
    while try_finished(&backend).await.unwrap_or(0) < RESTART_EXECUTIONS as i64 {
        assert!(
            start.elapsed() < LIMIT,
            "not every execution finished within {LIMIT:?}\n{}\n{}",
            worker_logs(&dir),
            unfinished(&backend).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    for mut w in workers {
        let _ = w.child.start_kill();
        let _ = w.child.wait().await;
    }

    let report = check_fleet(&backend, &client, &ids, None, &dir).await;
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(backend.pool())
        .await
        .expect("count dead letters");
    let paused: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE status = 'paused'")
        .fetch_one(backend.pool())
        .await
        .expect("count paused");
    let executions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions")
        .fetch_one(backend.pool())
        .await
        .expect("count executions");
    let detected = server.log().matches("deadlock detected").count();
    let counted = deadlocks_lost_on_crash + deadlocks(&backend).await;
    eprintln!(
        "{RESTART_EXECUTIONS} executions of {STEPS} steps in {took:?} across 4 restarts \
         (2 fast, 2 immediate, {DOWN_FOR:?} down each, {lease_duration:?} leases): \
         {executions} executions stored, {dispatch_retries} dispatches retried, \
         {} step runs, {} steps ran again before their result was stored, \
         0 after; dead letters {dead}, paused {paused}, deadlocks {detected} in the log \
         ({counted} in pg_stat_database); first completion after each restart: {recoveries:?}",
        report.step_runs, report.reruns
    );
    assert_eq!(
        executions, RESTART_EXECUTIONS as i64,
        "one execution per key"
    );
    assert_eq!(dead, 0, "false dead letters");
    assert_eq!(paused, 0, "paused executions");
    assert_eq!(
        detected,
        0,
        "deadlocks in the server log:\n{}",
        server
            .log()
            .lines()
            .filter(|l| l.contains("deadlock") || l.contains("Process "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(counted, 0, "deadlocks in pg_stat_database");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deadlocks the server detected in the test database since its start.
async fn deadlocks(backend: &PostgresBackend) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = 'test'")
        .fetch_one(backend.pool())
        .await
        .unwrap_or(0)
}

/// The tasks not done and their executions, for a report of a stuck run.
async fn unfinished(backend: &PostgresBackend) -> String {
    let rows = sqlx::query(
        "SELECT t.invocation_id::text AS inv, t.execution_id::text AS exec, t.function, \
                t.state, t.run_at, t.lease_owner, t.lease_until, t.epoch, t.attempts, t.wake, \
                e.status, (SELECT COUNT(*) FROM journal j WHERE j.invocation_id = t.invocation_id) AS events, \
                (SELECT COUNT(*) FROM inbox i WHERE i.invocation_id = t.invocation_id) AS inbox \
         FROM tasks t JOIN executions e ON e.id = t.execution_id \
         WHERE t.state <> 'done' ORDER BY t.created LIMIT 20",
    )
    .fetch_all(backend.pool())
    .await;
    let now: i64 =
        sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::int8")
            .fetch_one(backend.pool())
            .await
            .unwrap_or(0);
    match rows {
        Err(e) => format!("cannot read the tasks: {e}"),
        Ok(rows) => {
            let mut out = format!("now {now}; tasks not done (first 20):\n");
            for r in rows {
                out += &format!(
                    "{} exec {} {} state {} run_at {} owner {:?} until {:?} epoch {} attempts {} wake {} exec-status {} events {} inbox {}\n",
                    r.get::<String, _>("inv"),
                    r.get::<String, _>("exec"),
                    r.get::<String, _>("function"),
                    r.get::<String, _>("state"),
                    r.get::<i64, _>("run_at"),
                    r.get::<Option<String>, _>("lease_owner"),
                    r.get::<Option<i64>, _>("lease_until"),
                    r.get::<i64, _>("epoch"),
                    r.get::<i32, _>("attempts"),
                    r.get::<bool, _>("wake"),
                    r.get::<String, _>("status"),
                    r.get::<i64, _>("events"),
                    r.get::<i64, _>("inbox"),
                );
            }
            out
        }
    }
}
