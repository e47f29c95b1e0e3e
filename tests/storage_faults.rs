//! Storage faults at the store boundary, on the memory backend (virtual
//! time) and on SQLite (real time): each kind of storage call fails once,
//! either before it reaches storage or after it was applied (its reply
//! lost), and the store then stays down for longer than a lease. Every
//! execution must complete with the right result, its journals must have no
//! gaps, no step whose end was stored may run again (counted outside the
//! engine), and nothing may be dead-lettered.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use stent::backends::{MemoryBackend, SqliteBackend};
use stent::{ExecutionId, InvocationId, Stent, TaskFilter, TaskState};
use stent_journal::Seq;
use stent_journal::event::Event;
use stent_journal::store::Backend;
use stent_tests::faults::{Call, CommitKind, StoreFaults, Trap, tick};
use stent_tests::{CountingBackend, TestWorker};

/// When each step body run began ([`tick`]), per (workflow, step).
type Runs = Mutex<HashMap<(u64, u32), Vec<u64>>>;

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

fn ran(workflow: u64, step: u32) {
    let at = tick();
    runs()
        .lock()
        .unwrap()
        .entry((workflow, step))
        .or_default()
        .push(at);
}

fn runs_of(workflow: u64, step: u32) -> Vec<u64> {
    runs()
        .lock()
        .unwrap()
        .get(&(workflow, step))
        .cloned()
        .unwrap_or_default()
}

#[stent::durable]
async fn quick_step(workflow: u64, step: u32) -> Result<u64, String> {
    ran(workflow, step);
    Ok(workflow * 100 + u64::from(step))
}

#[stent::durable]
async fn slow_step(workflow: u64, step: u32) -> Result<u64, String> {
    ran(workflow, step);
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
/// Longer than a lease: every lease held when the store went away lapses.
const OUTAGE: Duration = Duration::from_millis(1500);
const SIGNAL_AFTER: Duration = Duration::from_millis(1200);
const SIGNAL: u64 = 7;

fn expected(workflow: u64) -> u64 {
    3 * workflow * 100 + 1 + 2 + 3 + SIGNAL
}

/// One fault: the trap, and the workflow number its case uses.
struct Case {
    workflow: u64,
    trap: Trap,
}

/// Brings the store back `OUTAGE` after it went down.
fn heal_after_outage(faults: std::sync::Arc<StoreFaults>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if faults.is_down() {
                tokio::time::sleep(OUTAGE).await;
                faults.up();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Runs `case` on `inner` and checks the outcome.
async fn run_case<B: Backend + Clone>(inner: B, case: Case) {
    let Case { workflow, trap } = case;
    let backend = CountingBackend::new(inner.clone());
    backend.faults.arm(trap);
    let healer = heal_after_outage(backend.faults.clone());
    let executor = Stent::new(backend.clone());
    // Reads for the checks go around the faults.
    let client = Stent::new(inner.clone());
    let worker = TestWorker::start_with(&executor, |w| {
        w.lease_duration(LEASE)
            .heartbeat_interval(LEASE / 5)
            .poll_interval(Duration::from_millis(20))
            .poll_interval_max(Duration::from_millis(200))
            .sticky_timer(Duration::from_millis(100))
    })
    .await;

    let id = retry("dispatch", || async {
        executor.dispatch(faulted_flow(workflow)).await
    })
    .await;
    tokio::time::sleep(SIGNAL_AFTER).await;
    // A client retries a signal whose outcome it does not know; the
    // workflow takes the first one.
    retry("signal", || executor.send_signal(id, "go", &SIGNAL)).await;

    let out = client
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("{trap:?}: execution {id} did not end: {e}"));
    worker.stop().await;
    healer.abort();
    let what = format!("{trap:?}");
    assert_eq!(out, Ok(expected(workflow)), "{what}");
    assert_eq!(
        backend.faults.injected(),
        1,
        "{what}: the fault never fired"
    );
    assert_no_gaps(&inner, id, &what).await;
    assert_no_run_after_stored_end(&inner, &backend.faults, id, workflow, &what).await;
    assert_all_done(&inner, id, &what).await;
}

/// Calls `op` until it succeeds, as a client that does not know whether a
/// failed call landed would.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = stent::Result<T>>,
{
    for _ in 0..200 {
        match op().await {
            Ok(v) => return v,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{what} kept failing");
}

/// Every journal of the execution is numbered 0, 1, 2, … with no gap.
async fn assert_no_gaps<B: Backend>(backend: &B, id: ExecutionId, what: &str) {
    let journals = backend
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

/// No step body began after that step's end was stored; each ran at most
/// twice (once more only after a fault lost its end).
async fn assert_no_run_after_stored_end<B: Backend>(
    backend: &B,
    faults: &StoreFaults,
    id: ExecutionId,
    workflow: u64,
    what: &str,
) {
    let root = backend
        .read_journal(id.root_invocation(), Seq(0))
        .await
        .expect("read journal");
    let children: Vec<InvocationId> = root
        .iter()
        .filter_map(|row| match Event::decode(&row.bytes) {
            Ok(Event::CallScheduled { child, .. }) => Some(child),
            _ => None,
        })
        .collect();
    assert_eq!(children.len(), 3, "{what}: calls in the root's journal");
    for (step, child) in (1..).zip(children) {
        let runs = runs_of(workflow, step);
        let stored = faults
            .end_stored_at(child)
            .unwrap_or_else(|| panic!("{what}: the end of step {step} was never stored"));
        assert!(
            runs.iter().all(|&run| run < stored),
            "{what}: step {step} ran at {runs:?}, after its end was stored at {stored}"
        );
        assert!(
            (1..=2).contains(&runs.len()),
            "{what}: step {step} ran {runs:?}"
        );
    }
}

/// Every task of the execution is done and nothing was dead-lettered.
async fn assert_all_done<B: Backend>(backend: &B, id: ExecutionId, what: &str) {
    let tasks = backend
        .list_tasks(TaskFilter {
            execution: Some(id),
            limit: 100,
            ..TaskFilter::default()
        })
        .await
        .expect("list tasks");
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{what}: {tasks:?}"
    );
    let dead = backend.list_dead_letters(10).await.expect("dead letters");
    assert!(dead.is_empty(), "{what}: false dead letters {dead:?}");
}

/// The faults, each with the store down for `OUTAGE` right after.
fn case(n: u64) -> Case {
    let call = |c| Trap::on(c).then_down();
    let commit = |k| Trap::on(Call::Commit).commit(k).then_down();
    let trap = match n {
        1 => call(Call::Claim),
        2 => call(Call::Claim).landed(true),
        3 => call(Call::Renew),
        4 => call(Call::Renew).landed(true),
        5 => commit(CommitKind::Turn),
        6 => commit(CommitKind::Turn).landed(true),
        7 => commit(CommitKind::StepEnd),
        8 => commit(CommitKind::StepEnd).landed(true),
        9 => commit(CommitKind::RootEnd),
        10 => commit(CommitKind::RootEnd).landed(true),
        11 => call(Call::SendSignal),
        12 => call(Call::SendSignal).landed(true),
        13 => call(Call::PendingSignals),
        14 => commit(CommitKind::StepEnd).skip(1),
        15 => commit(CommitKind::StepEnd).skip(1).landed(true),
        _ => unreachable!("no case {n}"),
    };
    Case { workflow: n, trap }
}

macro_rules! cases {
    ($($name:ident = $n:literal;)*) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    run_case(MemoryBackend::new(), case($n)).await;
                }
            )*
        }
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = std::env::temp_dir()
                        .join(format!("stent-faults-{}", ExecutionId::new_random()));
                    std::fs::create_dir_all(&dir).expect("temp dir");
                    let backend = SqliteBackend::open(dir.join("stent.db")).await.expect("open");
                    backend.init_db().await.expect("init_db");
                    // Sqlite cases run in real time: their workflows are
                    // numbered apart from the memory cases'.
                    let mut c = case($n);
                    c.workflow += 1000;
                    run_case(backend, c).await;
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
}
