//! Storage faults: each kind of storage call fails once, either before it
//! reaches storage or after it was applied (its reply lost), and storage
//! then stays away for longer than a lease. On the memory backend (virtual
//! time) and SQLite the faults are injected at the store boundary
//! ([`stent_tests::faults`]); on PostgreSQL by a TCP proxy between the
//! worker and the server ([`stent_tests::proxy`]), which cuts the
//! connection before a chosen statement or after the server ran it.
//!
//! Every execution must complete with the right result, its journals must
//! have no gaps, no step body may begin once that step's end is stored
//! (each body checks, as it starts, the storage behind the faults), and
//! nothing may be dead-lettered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use stent::backends::{MemoryBackend, PostgresBackend, SqliteBackend};
use stent::records::{TaskFilter, TaskState};
use stent::{ExecutionId, InvocationId, Stent};
use stent_journal::Seq;
use stent_journal::event::Event;
use stent_journal::store::Backend;
use stent_tests::faults::{Call, CommitKind, Trap};
use stent_tests::proxy::FaultProxy;
use stent_tests::{CountingBackend, TestWorker, pg_address, pg_test_schema, pg_url_via};

/// What a step body knows about the workflow it runs in: the storage
/// behind the faults and the execution, to see whether its end is stored.
struct Watched {
    store: Arc<dyn Backend>,
    execution: ExecutionId,
    /// Body runs per step (index 0: step 1).
    runs: [u32; 3],
    /// Runs that began after the step's end was stored.
    after_end: Vec<String>,
}

fn watched() -> &'static Mutex<HashMap<u64, Watched>> {
    static WATCHED: OnceLock<Mutex<HashMap<u64, Watched>>> = OnceLock::new();
    WATCHED.get_or_init(Mutex::default)
}

fn watch(workflow: u64, store: Arc<dyn Backend>, execution: ExecutionId) {
    watched().lock().unwrap().insert(
        workflow,
        Watched {
            store,
            execution,
            runs: [0; 3],
            after_end: Vec::new(),
        },
    );
}

/// Counts a run of step `step` and records it if that step's end is stored
/// already (a run that must never happen).
async fn ran(workflow: u64, step: u32) {
    let (store, execution) = {
        let mut watched = watched().lock().unwrap();
        let w = watched.get_mut(&workflow).expect("workflow watched");
        w.runs[step as usize - 1] += 1;
        (w.store.clone(), w.execution)
    };
    if let Some(child) = stored_step(&*store, execution, step).await {
        let journal = store.read_journal(child, Seq(0)).await.expect("journal");
        if journal.iter().any(|row| row.kind == "completed") {
            let report = format!("step {step} began after its end was stored in {child}");
            let mut watched = watched().lock().unwrap();
            let w = watched.get_mut(&workflow).expect("workflow watched");
            w.after_end.push(report);
        }
    }
}

/// The invocation of the `step`th call in the root's stored journal.
async fn stored_step(store: &dyn Backend, id: ExecutionId, step: u32) -> Option<InvocationId> {
    let root = store
        .read_journal(id.root_invocation(), Seq(0))
        .await
        .expect("read journal");
    root.iter()
        .filter_map(|row| match Event::decode(&row.bytes) {
            Ok(Event::CallScheduled { child, .. }) => Some(child),
            _ => None,
        })
        .nth(step as usize - 1)
}

#[stent::durable]
async fn quick_step(workflow: u64, step: u32) -> Result<u64, String> {
    ran(workflow, step).await;
    Ok(workflow * 100 + u64::from(step))
}

#[stent::durable]
async fn slow_step(workflow: u64, step: u32) -> Result<u64, String> {
    ran(workflow, step).await;
    tokio::time::sleep(SLOW_STEP).await;
    Ok(workflow * 100 + u64::from(step))
}

/// An inline step, a step in a task of its own, a durable timer that parks
/// the workflow (so it is claimed again), a signal, and one more step.
#[stent::durable]
async fn faulted_flow(workflow: u64) -> Result<u64, String> {
    let a = quick_step(workflow, 1).await?;
    let b = slow_step(workflow, 2).await?;
    Stent::sleep(TIMER).await.map_err(|e| e.to_string())?;
    let signal: u64 = Stent::wait_for_signal("go")
        .await
        .map_err(|e| e.to_string())?;
    let c = quick_step(workflow, 3).await?;
    Ok(a + b + c + signal)
}

const SLOW_STEP: Duration = Duration::from_millis(300);
const TIMER: Duration = Duration::from_millis(400);
const LEASE: Duration = Duration::from_secs(1);
/// Longer than a lease: every lease held when storage went away lapses.
const OUTAGE: Duration = Duration::from_millis(1500);
const SIGNAL_AFTER: Duration = Duration::from_millis(1200);
const SIGNAL: u64 = 7;

fn expected(workflow: u64) -> u64 {
    3 * workflow * 100 + 1 + 2 + 3 + SIGNAL
}

fn worker_settings(w: stent::WorkerBuilder) -> stent::WorkerBuilder {
    w.lease_duration(LEASE)
        .heartbeat_interval(LEASE / 5)
        .poll_min_interval(Duration::from_millis(20))
        .poll_max_interval(Duration::from_millis(200))
        .sticky_timer(Duration::from_millis(100))
}

/// Calls `op` until it succeeds, as a client that does not know whether a
/// failed call landed would.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = stent::Result<T>>,
{
    for _ in 0..400 {
        match op().await {
            Ok(v) => return v,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{what} kept failing");
}

/// Dispatches `workflow` through `app` (whose storage is faulted; no worker
/// runs yet) under a key, again until it succeeds, and watches it with
/// `client`'s storage. Exactly one execution results.
async fn dispatch(client: &Stent, app: &Stent, workflow: u64) -> ExecutionId {
    let key = format!("faulted-flow-{workflow}");
    let id = retry("dispatch", || async {
        app.dispatch(faulted_flow(workflow)).key(&key).await
    })
    .await;
    assert_eq!(id, ExecutionId::from_key(&key));
    let all = client
        .list_executions(10, 0, None)
        .await
        .expect("list executions");
    assert_eq!(all.len(), 1, "executions after a retried dispatch");
    watch(workflow, client.backend().clone(), id);
    id
}

/// Runs the workflow on `worker` (an executor whose storage is faulted),
/// sends its signal through `app`, and checks everything through `client`,
/// on the storage behind the faults.
async fn run_and_check(
    client: &Stent,
    worker: &Stent,
    app: &Stent,
    id: ExecutionId,
    workflow: u64,
    what: &str,
) {
    let running = TestWorker::start_with(worker, worker_settings).await;
    tokio::time::sleep(SIGNAL_AFTER).await;
    // A client retries a signal whose outcome it does not know, under a
    // key: it is stored once, and a retry after the execution took it and
    // ended is told it was delivered.
    retry("signal", || async {
        app.send_signal_with_key(id, "go", &SIGNAL, "go-once").await
    })
    .await;
    let out = client
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("{what}: execution {id} did not end: {e}"));
    running.stop().await;
    let store = client.backend();
    assert_eq!(out, Ok(expected(workflow)), "{what}");
    assert_no_gaps(&**store, id, what).await;
    let (runs, after_end) = {
        let watched = watched().lock().unwrap();
        let w = &watched[&workflow];
        (w.runs, w.after_end.clone())
    };
    assert!(after_end.is_empty(), "{what}: {after_end:?}");
    let left = store
        .pending_signals(id, &[])
        .await
        .expect("pending signals");
    assert!(
        left.is_empty(),
        "{what}: a signal was stored twice: {left:?}"
    );
    // A step whose end was lost may run again; no step runs a third time.
    assert!(runs.iter().all(|n| (1..=2).contains(n)), "{what}: {runs:?}");
    assert_all_done(&**store, id, what).await;
}

/// Every journal of the execution is numbered 0, 1, 2, … with no gap.
async fn assert_no_gaps(store: &dyn Backend, id: ExecutionId, what: &str) {
    let journals = store
        .read_execution_journal(id, None)
        .await
        .expect("read journals");
    assert!(!journals.is_empty());
    for (invocation, rows) in journals {
        let seqs: Vec<u32> = rows.iter().map(|r| r.seq.0).collect();
        let want: Vec<u32> = (0..rows.len() as u32).collect();
        assert_eq!(seqs, want, "{what}: journal of {invocation} has a gap");
    }
}

/// Every task of the execution is done and nothing was dead-lettered.
async fn assert_all_done(store: &dyn Backend, id: ExecutionId, what: &str) {
    let tasks = store
        .list_tasks(TaskFilter::default().execution(id).limit(100))
        .await
        .expect("list tasks");
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{what}: {tasks:?}"
    );
    let dead = store.list_dead_letters(10).await.expect("dead letters");
    assert!(dead.is_empty(), "{what}: false dead letters {dead:?}");
}

/// Runs the workflow numbered `workflow` on `inner` with `trap` armed at
/// the store boundary, the store down for `OUTAGE` right after it fires.
async fn run_store_case<B: Backend + Clone>(inner: B, workflow: u64, trap: Trap) {
    let client = Stent::new(inner.clone());
    let backend = CountingBackend::new(inner);
    backend.faults.arm(trap.then_down());
    let faults = backend.faults.clone();
    let healer = tokio::spawn(async move {
        while !faults.is_down() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(OUTAGE).await;
        faults.up();
    });
    let executor = Stent::new(backend.clone());
    let id = dispatch(&client, &executor, workflow).await;
    let what = format!("{trap:?}");
    run_and_check(&client, &executor, &executor, id, workflow, &what).await;
    healer.abort();
    assert_eq!(
        backend.faults.injected(),
        1,
        "{what}: the fault never fired"
    );
}

/// A fresh SQLite database in a new temp directory (returned, to be
/// removed by the caller).
async fn temp_sqlite(what: &str) -> (SqliteBackend, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("stent-{what}-{}", ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let backend = SqliteBackend::open(dir.join("stent.db"))
        .await
        .expect("open");
    backend.init_db().await.expect("init_db");
    (backend, dir)
}

/// The store-boundary faults, by number.
fn store_trap(n: u64) -> Trap {
    let commit = |k| Trap::on(Call::Commit).commit(k);
    match n {
        1 => Trap::on(Call::Claim),
        2 => Trap::on(Call::Claim).landed(true),
        3 => Trap::on(Call::Renew),
        4 => Trap::on(Call::Renew).landed(true),
        5 => commit(CommitKind::Turn),
        6 => commit(CommitKind::Turn).landed(true),
        7 => commit(CommitKind::StepEnd),
        8 => commit(CommitKind::StepEnd).landed(true),
        9 => commit(CommitKind::RootEnd),
        10 => commit(CommitKind::RootEnd).landed(true),
        11 => Trap::on(Call::SendSignal),
        12 => Trap::on(Call::SendSignal).landed(true),
        13 => Trap::on(Call::PendingSignals),
        14 => commit(CommitKind::StepEnd).skip(1),
        15 => commit(CommitKind::StepEnd).skip(1).landed(true),
        16 => Trap::on(Call::CreateExecution),
        17 => Trap::on(Call::CreateExecution).landed(true),
        _ => unreachable!("no case {n}"),
    }
}

/// A fault the proxy injects on PostgreSQL: the statement whose SQL
/// contains `sql` (and whose parameters contain `bound`, if given) is cut
/// before it reaches the server, or runs there with its reply lost.
#[derive(Debug, Clone, Copy)]
struct PgTrap {
    sql: &'static str,
    bound: Option<&'static [u8]>,
    landed: bool,
}

fn pg_trap(n: u64) -> PgTrap {
    // The claim; the renewal; the first commit of the workflow's steps
    // (its first turn, the inline step spawned and finished with it, the
    // slow step spawned: one statement generated for its shape, the kind
    // that alone calls `stent_lease_lost`); the commit that finishes the
    // slow step's task (fenced `done`); the commit that ends the execution
    // (a generated statement, or a transaction when the last turn also
    // consumed the signal, depending on when it arrived); a signal; the
    // dispatch.
    let (sql, bound): (&str, Option<&[u8]>) = match n / 2 {
        0 => ("SKIP LOCKED", None),
        1 => ("UPDATE tasks AS t SET lease_until", None),
        2 => ("stent_lease_lost", None),
        3 => ("UPDATE tasks SET state = 'done'", None),
        4 => ("UPDATE executions SET status = ", None),
        5 => ("INSERT INTO signals", None),
        6 => ("INSERT INTO executions", None),
        _ => unreachable!("no case {n}"),
    };
    PgTrap {
        sql,
        bound,
        landed: n % 2 == 1,
    }
}

/// A schema of its own (`None`: PostgreSQL is absent and the test skips),
/// a [`FaultProxy`] to the server armed with `trap` and refusing
/// connections for `OUTAGE` after it fires, and a backend on the schema
/// connected through the proxy.
async fn behind_proxy(
    prefix: &str,
    trap: PgTrap,
) -> Option<(stent_tests::PgTestSchema, FaultProxy, PostgresBackend)> {
    let schema = pg_test_schema(prefix).await?;
    let direct = stent_tests::pg_url();
    let upstream = pg_address(&direct).await.expect("server address");
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let via = PostgresBackend::builder(pg_url_via(&direct, proxy.addr()))
        .schema(schema.name())
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect through the proxy");
    let bound = trap.bound.unwrap_or_default();
    match trap.landed {
        true => proxy.lose_reply_to_bound(trap.sql, bound, 1, Some(OUTAGE)),
        false => proxy.cut_before_bound(trap.sql, bound, 1, Some(OUTAGE)),
    }
    Some((schema, proxy, via))
}

/// Runs the workflow numbered `workflow` on a schema of its own, its worker
/// connected through a [`FaultProxy`] armed with `trap` and refusing
/// connections for `OUTAGE` after it fires.
async fn run_pg_case(workflow: u64, trap: PgTrap) {
    let Some((schema, proxy, via)) = behind_proxy("stent_faults", trap).await else {
        return;
    };
    let client = Stent::new(schema.backend.clone());
    let executor = Stent::new(via);
    let id = dispatch(&client, &executor, workflow).await;
    let what = format!("{trap:?}");
    run_and_check(&client, &executor, &executor, id, workflow, &what).await;
    assert_eq!(proxy.traps_pending(), 0, "{what}: the fault never fired");
}

macro_rules! cases {
    ($($name:ident = $n:literal;)*) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    run_store_case(MemoryBackend::new(), $n, store_trap($n)).await;
                }
            )*
        }
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (backend, dir) = temp_sqlite("faults").await;
                    run_store_case(backend, 1000 + $n, store_trap($n)).await;
                    let _ = std::fs::remove_dir_all(&dir);
                }
            )*
        }
    };
}

cases! {
    claim_lost = 1;
    claim_landed_reply_lost = 2;
    renewal_lost = 3;
    renewal_landed_reply_lost = 4;
    turn_commit_lost = 5;
    turn_commit_landed_reply_lost = 6;
    step_end_lost = 7;
    step_end_landed_reply_lost = 8;
    root_end_lost = 9;
    root_end_landed_reply_lost = 10;
    signal_lost = 11;
    signal_landed_reply_lost = 12;
    signal_read_lost = 13;
    second_step_end_lost = 14;
    second_step_end_landed_reply_lost = 15;
    dispatch_lost = 16;
    dispatch_landed_reply_lost = 17;
}

macro_rules! pg_cases {
    ($($name:ident = $n:literal;)*) => {
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    run_pg_case(2000 + $n, pg_trap($n)).await;
                }
            )*
        }
    };
}

pg_cases! {
    claim_cut = 0;
    claim_reply_lost = 1;
    renewal_cut = 2;
    renewal_reply_lost = 3;
    turn_commit_cut = 4;
    turn_commit_reply_lost = 5;
    step_end_cut = 6;
    step_end_reply_lost = 7;
    root_end_cut = 8;
    root_end_reply_lost = 9;
    signal_cut = 10;
    signal_reply_lost = 11;
    dispatch_cut = 12;
    dispatch_reply_lost = 13;
}

/// Eight steps gathered that return at once (run inline, their ends
/// committed with the workflow's turn), then eight that await I/O (each in
/// a task of its own): commits of many turns, which PostgreSQL writes a set
/// at a time (`stent_commit_set`).
#[stent::durable]
async fn fanned_flow(workflow: u64) -> Result<u64, String> {
    let quick = Stent::gather((1..=8).map(|s| counted_step(workflow, s))).await;
    let slow = Stent::gather((9..=16).map(|s| counted_waiting_step(workflow, s))).await;
    quick.into_iter().chain(slow).sum()
}

/// The first commit of many turns that finishes tasks is cut before it
/// reaches PostgreSQL, or runs there with its reply lost, and the server
/// then stays away for longer than a lease. The fan-out completes with the
/// right result, no journal has a gap, every task is done, and no step
/// body runs again: the worker commits the ends it kept once the server is
/// back.
async fn fan_out_case(workflow: u64, landed: bool) {
    let trap = PgTrap {
        sql: "stent_commit_set",
        bound: Some(b"done"),
        landed,
    };
    let Some((schema, proxy, via)) = behind_proxy("stent_fanfault", trap).await else {
        return;
    };
    let client = Stent::new(schema.backend.clone());
    let executor = Stent::new(via);
    let worker = TestWorker::start_with(&executor, worker_settings).await;
    let id = client
        .dispatch(fanned_flow(workflow))
        .await
        .expect("dispatch");
    let what = format!("fan-out, landed: {landed}");
    let out = client
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("{what}: execution {id} did not end: {e}"));
    worker.stop().await;
    assert_eq!(out, Ok(16 * workflow * 10 + (1..=16).sum::<u64>()), "{what}");
    assert_eq!(proxy.traps_pending(), 0, "{what}: the fault never fired");
    let runs: Vec<u32> = (1..=16)
        .map(|step| counted_runs().lock().unwrap()[&(workflow, step)])
        .collect();
    assert_eq!(runs, [1; 16], "{what}: step body runs");
    assert_no_gaps(&**client.backend(), id, &what).await;
    assert_all_done(&**client.backend(), id, &what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_commit_cut_before_postgres() {
    fan_out_case(3101, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_commit_whose_reply_is_lost_postgres() {
    fan_out_case(3102, true).await;
}

#[stent::durable]
async fn long_step(n: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_secs(4)).await;
    Ok(n + 1)
}

#[stent::durable]
async fn calls_long_step(n: u64) -> Result<u64, String> {
    long_step(n).await
}

/// A lease that lapses while its worker is cut off from the store (a
/// database restart, a network partition) is taken over by another
/// worker; the first, alive, finds it gone and reports it, so the takeover
/// does not count as a crash. Five takeovers in a row would dead-letter
/// the step as a crash loop (limit 3) if they counted.
#[tokio::test(start_paused = true)]
async fn lapsed_leases_of_live_workers_are_no_crash_loop() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let settings = |name: &'static str| {
        move |w: stent::WorkerBuilder| {
            worker_settings(w)
                .worker_id(name)
                .poll_max_interval(Duration::from_millis(50))
        }
    };
    let a = TestWorker::start_with(&executor, settings("a")).await;
    let b = TestWorker::start_with(&executor, settings("b")).await;
    let id = executor.dispatch(calls_long_step(1)).await.unwrap();
    let step = InvocationId::child_of(id.root_invocation(), Seq(1));
    let owner = || async {
        let task = executor.backend().task(step).await.unwrap()?;
        (task.state == TaskState::Leased)
            .then_some(task.lease_owner)
            .flatten()
            .map(|w| (w, task.attempts))
    };
    let mut takeovers = 0;
    let mut most_attempts = 0;
    let mut holder = loop {
        if let Some((w, _)) = owner().await {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for _ in 0..5 {
        // Cut the holder off for longer than a lease: the other worker
        // takes the step over.
        backend.partition(holder.as_str());
        let cut = tokio::time::Instant::now();
        let taker = loop {
            match owner().await {
                Some((w, attempts)) if w != holder => {
                    most_attempts = most_attempts.max(attempts);
                    break w;
                }
                _ => {
                    let dead = executor.list_dead_letters(10).await.unwrap();
                    assert!(dead.is_empty(), "after {takeovers} takeovers: {dead:?}");
                    assert!(cut.elapsed() < 10 * LEASE, "no takeover");
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
            }
        };
        takeovers += 1;
        // Back, the first holder finds its lease gone and reports it.
        *backend.partitioned.lock().unwrap() = None;
        tokio::time::sleep(LEASE / 2).await;
        holder = taker;
    }
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .expect("the execution ends");
    a.stop().await;
    b.stop().await;
    assert_eq!(out, Ok(2));
    assert_eq!(takeovers, 5);
    assert!(
        most_attempts <= 2,
        "takeovers of live workers counted: attempts reached {most_attempts}"
    );
    let dead = executor.list_dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}

#[stent::durable]
async fn padded_step(workflow: u64, step: u32) -> Result<String, String> {
    Ok(format!("{workflow}-{step}-{}", "x".repeat(2048)))
}

#[stent::durable]
async fn padded_flow(workflow: u64) -> Result<usize, String> {
    let mut total = 0;
    for step in 0..5 {
        total += padded_step(workflow, step).await?.len();
    }
    Ok(total)
}

/// A tmpfs of `size` mounted on a fresh directory (as root), unmounted
/// when dropped; `None` where mounting is not allowed.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("stent-disk-{}", ExecutionId::new_random()));
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(SmallDisk { dir })
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 16 * 1024];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_data())
            .is_ok()
        {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a connection thread may still be closing the database.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SQLite on a disk that fills up: writes are refused with errors (a
/// dispatch says so to its caller), the worker keeps running, and once
/// space returns every execution that was accepted completes, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_and_recovers() {
    let Some(disk) = SmallDisk::mount("8m") else {
        stent_test_services::skip("a small tmpfs", "cannot mount one here (not root?)");
        return;
    };
    let backend = SqliteBackend::open(disk.dir.join("stent.db"))
        .await
        .expect("open");
    backend.init_db().await.expect("init_db");
    let executor = Stent::new(backend);
    let worker = TestWorker::start_with(&executor, worker_settings).await;
    // Accepted before the disk fills, they become due once it is full.
    let mut accepted = Vec::new();
    for n in 0..20 {
        let id = executor
            .dispatch(padded_flow(n))
            .delay(Duration::from_millis(300))
            .await
            .expect("dispatch");
        accepted.push((n, id));
    }
    let filler = disk.fill();
    let completed = executor
        .list_executions(100, 0, Some(stent::ExecutionStatus::Completed))
        .await
        .expect("list")
        .len();
    assert_eq!(completed, 0, "the disk filled too late to matter");
    let mut refused = 0;
    for n in 20..60 {
        match executor.dispatch(padded_flow(n)).await {
            Ok(id) => accepted.push((n, id)),
            Err(e) => {
                refused += 1;
                let message = e.to_string();
                assert!(
                    message.contains("full") || message.contains("space"),
                    "a refused write says why: {message}"
                );
                match &e {
                    stent::Error::Backend(stent::journal::store::StoreError::Database(db)) => {
                        assert_eq!(
                            db.kind(),
                            stent::journal::store::DatabaseErrorKind::Full,
                            "{db}"
                        );
                        // SQLITE_FULL
                        assert_eq!(db.code(), Some("13"), "{db}");
                    }
                    other => panic!("a full disk is a database error: {other:?}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0, "no write was refused on a full disk");
    tokio::time::sleep(LEASE * 2).await;
    assert!(!worker.is_finished(), "the worker stopped on a full disk");

    // Space returns: everything accepted completes.
    std::fs::remove_file(&filler).expect("remove filler");
    for (n, id) in &accepted {
        let out = executor
            .wait_for::<usize, String>(*id, Some(Duration::from_secs(60)))
            .await
            .unwrap_or_else(|e| panic!("execution {n} ({id}) after the disk had room: {e}"));
        assert_eq!(
            out,
            Ok(5 * (format!("{n}-0-").len() + 2048)),
            "execution {n}"
        );
    }
    worker.stop().await;
    let dead = executor.list_dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    eprintln!(
        "full disk: {} executions accepted, {refused} dispatches refused, all accepted completed",
        accepted.len()
    );
}

/// Body runs of [`counted_step`], by workflow and step.
fn counted_runs() -> &'static Mutex<HashMap<(u64, u32), u32>> {
    static RUNS: OnceLock<Mutex<HashMap<(u64, u32), u32>>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

#[stent::durable]
async fn counted_step(workflow: u64, step: u32) -> Result<u64, String> {
    *counted_runs()
        .lock()
        .unwrap()
        .entry((workflow, step))
        .or_default() += 1;
    Ok(workflow * 10 + u64::from(step))
}

/// Like [`counted_step`], but it awaits I/O first, so it runs in a task of
/// its own and stores its end itself.
#[stent::durable]
async fn counted_waiting_step(workflow: u64, step: u32) -> Result<u64, String> {
    *counted_runs()
        .lock()
        .unwrap()
        .entry((workflow, step))
        .or_default() += 1;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(workflow * 10 + u64::from(step))
}

/// Two steps that return at once (so they run inline, their ends kept in
/// memory for the workflow's next commit) around a timer that parks it,
/// and a step in a task of its own.
#[stent::durable]
async fn flapping_flow(workflow: u64) -> Result<u64, String> {
    let a = counted_step(workflow, 1).await?;
    Stent::sleep(TIMER).await.map_err(|e| e.to_string())?;
    let b = counted_waiting_step(workflow, 2).await?;
    let c = counted_step(workflow, 3).await?;
    Ok(a + b + c)
}

/// Storage that answers reads but fails commit after commit (a flapping
/// connection, a pool whose new connections are refused): each commit
/// holding a step's end fails three times, the third time after it
/// landed. The worker re-reads lease and journal after each failure and
/// commits the outcome it kept (an inline step's, scheduled again by the
/// replayed journal; a step's own): no step body runs twice.
async fn flapping_commits_case<B: Backend + Clone>(inner: B, workflow: u64) {
    let client = Stent::new(inner.clone());
    let backend = CountingBackend::new(inner);
    const TRAPS: usize = 9;
    for n in 0..TRAPS {
        backend.faults.arm(
            Trap::on(Call::Commit)
                .commit(CommitKind::StepEnd)
                .landed(n % 3 == 2),
        );
    }
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start_with(&executor, worker_settings).await;
    let id = executor
        .dispatch(flapping_flow(workflow))
        .await
        .expect("dispatch");
    let out = client
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .expect("the execution ends");
    worker.stop().await;
    assert_eq!(out, Ok(3 * workflow * 10 + 6));
    assert_eq!(backend.faults.injected(), TRAPS as u64, "faults injected");
    let runs: Vec<u32> = (1..=3)
        .map(|step| counted_runs().lock().unwrap()[&(workflow, step)])
        .collect();
    assert_eq!(
        runs,
        [1, 1, 1],
        "step body runs under {TRAPS} failed commits"
    );
    assert_no_gaps(&**client.backend(), id, "flapping commits").await;
    assert_all_done(&**client.backend(), id, "flapping commits").await;
}

#[tokio::test(start_paused = true)]
async fn flapping_commits_never_run_a_step_again_memory() {
    flapping_commits_case(MemoryBackend::new(), 3001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_commits_never_run_a_step_again_sqlite() {
    let (backend, dir) = temp_sqlite("flap").await;
    flapping_commits_case(backend, 3002).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_commits_never_run_a_step_again_postgres() {
    let Some(schema) = pg_test_schema("stent_flap").await else {
        return;
    };
    flapping_commits_case(schema.backend.clone(), 3003).await;
}

#[stent::durable]
async fn two_counted_steps(workflow: u64) -> Result<u64, String> {
    let a = counted_step(workflow, 1).await?;
    let b = counted_step(workflow, 2).await?;
    Ok(a + b)
}

/// Forks a finished execution after its first step while the commit that
/// writes the fork's journal fails: lost before storage with storage then
/// away (the fork fails, and the new execution must never run: it would
/// run its kept step again), or landed with its reply lost (the fork
/// succeeds, and the kept step does not run again).
/// `watch`: how long a worker then runs beside the unwritten fork.
async fn fork_case<B: Backend + Clone>(inner: B, workflow: u64, landed: bool, watch: Duration) {
    let client = Stent::new(inner.clone());
    let backend = CountingBackend::new(inner);
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start_with(&executor, worker_settings).await;
    let id = executor
        .dispatch(two_counted_steps(workflow))
        .await
        .expect("dispatch");
    let out = client
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .expect("the original ends");
    let expected = Ok(2 * workflow * 10 + 3);
    assert_eq!(out, expected);
    let runs = |step| counted_runs().lock().unwrap()[&(workflow, step)];
    let trap = Trap::on(Call::Commit)
        .commit(CommitKind::Turn)
        .landed(landed);
    backend
        .faults
        .arm(if landed { trap } else { trap.then_down() });
    // Seqs 0..3: started, the first call, its result.
    let forked = executor.fork(id, Seq(3)).await;
    assert_eq!(backend.faults.injected(), 1, "the fault fired");
    if landed {
        let fork = forked.expect("a fork whose reply was lost succeeds");
        let out = client
            .wait_for::<u64, String>(fork, Some(Duration::from_secs(60)))
            .await
            .expect("the fork ends");
        assert_eq!(out, expected);
        assert_eq!((runs(1), runs(2)), (1, 2), "the kept step ran again");
    } else {
        let err = forked.expect_err("storage stayed away");
        let fork = client
            .list_executions(10, 0, None)
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .find(|e| *e != id)
            .expect("the fork was created");
        backend.faults.up();
        // Well past any lease: the held fork is never claimed.
        tokio::time::sleep(watch).await;
        assert_eq!((runs(1), runs(2)), (1, 1), "the unwritten fork ran");
        assert!(err.to_string().contains(&fork.to_string()), "{err}");
        let journal = client
            .backend()
            .read_journal(fork.root_invocation(), Seq(0))
            .await
            .expect("journal");
        assert_eq!(journal.len(), 1, "only the fork's start is stored");
    }
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_fork_whose_journal_is_not_written_never_runs_memory() {
    // Virtual time: ten minutes, past every lease a fork ever took.
    fork_case(MemoryBackend::new(), 4001, false, Duration::from_secs(600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_fork_whose_reply_was_lost_runs_once_memory() {
    fork_case(MemoryBackend::new(), 4002, true, LEASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_under_storage_faults_sqlite() {
    for (n, landed) in [(4003, false), (4004, true)] {
        let (backend, dir) = temp_sqlite("fork").await;
        fork_case(backend, n, landed, 4 * LEASE).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[stent::durable]
async fn sleeps_then_steps(workflow: u64) -> Result<u64, String> {
    Stent::sleep(Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    counted_step(workflow, 1).await
}

/// `wait_for` reads storage while it waits; a database that goes away for
/// a while (every call failing) does not end the wait, which returns the
/// result once the database is back and the workflow ends.
#[tokio::test(start_paused = true)]
async fn wait_for_waits_through_a_database_outage() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    // Another process's executor: it learns the end from storage only.
    let waiter = Stent::new(backend.clone());
    let worker = TestWorker::start_with(&executor, worker_settings).await;
    let id = executor
        .dispatch(sleeps_then_steps(5001))
        .await
        .expect("dispatch");
    let wait = tokio::spawn(async move {
        waiter
            .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    backend.faults.down();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = backend
        .faults
        .refused_while_down
        .load(std::sync::atomic::Ordering::SeqCst);
    backend.faults.up();
    let out = wait
        .await
        .expect("the waiting task")
        .expect("the wait ends");
    assert_eq!(out, Ok(5001 * 10 + 1));
    assert!(refused > 0, "no call failed during the outage");
    worker.stop().await;
}
