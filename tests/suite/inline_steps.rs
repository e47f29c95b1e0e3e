//! Inline steps: a lone step that returns in its first poll is stored with
//! its parent's next commit instead of costing a commit of its own; a step
//! that waits runs in a task of its own; a commit that fails calls the step
//! again. And a worker whose clock jumped past its leases renews them
//! before it claims, instead of taking its own running tasks over.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::records::{TaskFilter, TaskState};
use stent::{ExecutionId, Stent};
use stent_journal::Seq;
use stent_journal::store::JournalStore;
use stent_tests::{CountingBackend, TestWorker};
use tokio::sync::{Notify, Semaphore};

#[stent::durable]
async fn double(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[stent::durable]
async fn one_step(x: u64) -> Result<u64, String> {
    double(x).await
}

#[stent::durable]
async fn three_steps(x: u64) -> Result<u64, String> {
    let a = double(x).await?;
    let b = double(a).await?;
    double(b).await
}

async fn kinds(executor: &Stent, invocation: stent::InvocationId) -> Vec<String> {
    executor
        .backend()
        .read_journal(invocation, Seq(0))
        .await
        .expect("read journal")
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

async fn tasks(executor: &Stent, id: ExecutionId) -> Vec<stent::records::TaskRecord> {
    executor
        .list_tasks(TaskFilter::default().execution(id).limit(100))
        .await
        .expect("list tasks")
}

/// Runs `call` to its end with one worker on `backend`: the executor, the
/// execution and its result.
async fn run_to_end<D: stent::DurableFn>(
    backend: &CountingBackend<MemoryBackend>,
    call: stent::Call<D>,
) -> (Stent, ExecutionId, Result<u64, String>) {
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(call).await.unwrap();
    let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
    worker.stop().await;
    (executor, id, out)
}

/// Every task of `id` is done, `steps` of them besides the root, each with
/// a journal of `Started` and `Completed`.
async fn assert_steps_done(executor: &Stent, id: ExecutionId, steps: usize) {
    let tasks = tasks(executor, id).await;
    assert_eq!(tasks.len(), steps + 1, "{tasks:?}");
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:?}"
    );
    for t in tasks
        .iter()
        .filter(|t| t.invocation != id.root_invocation())
    {
        assert_eq!(
            kinds(executor, t.invocation).await,
            ["started", "completed"]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_one_step_workflow_is_stored_in_one_commit_with_every_record() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let (executor, id, out) = run_to_end(&backend, one_step(21)).await;
    assert_eq!(out, Ok(42));

    // The root's first turn, the step's end and the root's end: one commit.
    assert_eq!(backend.commits.load(Ordering::SeqCst), 1);
    // Everything a step run in its own task leaves is there.
    assert_steps_done(&executor, id, 1).await;
    assert_eq!(
        kinds(&executor, id.root_invocation()).await,
        ["started", "call_scheduled", "call_completed", "completed"]
    );
}

#[tokio::test(start_paused = true)]
async fn sequential_steps_cost_one_commit_each() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let (executor, id, out) = run_to_end(&backend, three_steps(1)).await;
    assert_eq!(out, Ok(8));
    // At most one step result waits in memory: each commit stores one
    // step's end with the turn that journals it and schedules the next.
    assert_eq!(backend.commits.load(Ordering::SeqCst), 3);
    assert_steps_done(&executor, id, 3).await;
}

static COUNTED_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable]
async fn counted(x: u64) -> Result<u64, String> {
    COUNTED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(x + 1)
}

#[stent::durable]
async fn calls_counted(x: u64) -> Result<u64, String> {
    counted(x).await
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_fails_reuses_the_inline_steps_outcome_and_stores_it_once() {
    let backend = CountingBackend::new(MemoryBackend::new());
    // The commit holding the step's end is refused (a lost connection):
    // nothing of the step was stored, and the worker that ran it is alive.
    // The journal re-read after the fault schedules the step again; its
    // outcome, kept in memory, answers it without a second run.
    backend.failing_commits.store(1, Ordering::SeqCst);
    let (executor, id, out) = run_to_end(&backend, calls_counted(1)).await;
    assert_eq!(out, Ok(2));
    assert_eq!(
        backend.failing_commits.load(Ordering::SeqCst),
        0,
        "the fault fired"
    );
    assert_eq!(COUNTED_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(
        kinds(&executor, id.root_invocation()).await,
        ["started", "call_scheduled", "call_completed", "completed"]
    );
    assert_steps_done(&executor, id, 1).await;
}

static CACHED_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable(cached)]
async fn cached_square(x: u64) -> Result<u64, String> {
    CACHED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(x * x)
}

#[stent::durable]
async fn calls_cached_square(x: u64) -> Result<u64, String> {
    cached_square(x).await
}

#[tokio::test(start_paused = true)]
async fn an_inline_step_of_a_cached_function_fills_the_cache() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    for _ in 0..2 {
        let id = executor.dispatch(calls_cached_square(9)).await.unwrap();
        let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
        assert_eq!(out, Ok(81));
    }
    worker.stop().await;
    assert_eq!(CACHED_RUNS.load(Ordering::SeqCst), 1);
}

/// A step that waits for the test (like a step awaiting an HTTP call).
struct Gate {
    started: AtomicU32,
    open: Notify,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            started: AtomicU32::new(0),
            open: Notify::const_new(),
        }
    }

    async fn pass(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.open.notified().await;
    }

    async fn until_started(&self) {
        while self.started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One gate per test that uses them (tests run in parallel).
static GATES: [Gate; 3] = [Gate::new(), Gate::new(), Gate::new()];
const IO_GATE: usize = 0;
const STALL_GATE: usize = 1;
const ORDER_GATE: usize = 2;

#[stent::durable]
async fn gated(gate: usize, x: u64) -> Result<u64, String> {
    GATES[gate].pass().await;
    Ok(x + 1)
}

#[stent::durable]
async fn calls_gated(gate: usize, x: u64) -> Result<u64, String> {
    gated(gate, x).await
}

#[tokio::test(start_paused = true)]
async fn a_step_that_waits_runs_as_a_stored_task_of_its_own() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(calls_gated(IO_GATE, 1)).await.unwrap();
    GATES[IO_GATE].until_started().await;
    // While it waits, the step is stored and leased, like any running step.
    let tasks = tasks(&executor, id).await;
    let step = tasks
        .iter()
        .find(|t| t.invocation != id.root_invocation())
        .expect("the waiting step is stored");
    assert_eq!(step.state, TaskState::Leased);
    assert_eq!(
        kinds(&executor, id.root_invocation()).await,
        ["started", "call_scheduled"]
    );
    GATES[IO_GATE].open.notify_one();
    let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
    assert_eq!(out, Ok(2));
    worker.stop().await;
    assert_eq!(GATES[IO_GATE].started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_worker_whose_leases_lapsed_in_a_stall_renews_them_instead_of_taking_its_tasks_over() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start_with(&executor, |w| {
        w.lease_duration(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_secs(3))
            .poll_min_interval(Duration::from_millis(100))
    })
    .await;
    let id = executor.dispatch(calls_gated(STALL_GATE, 1)).await.unwrap();
    GATES[STALL_GATE].until_started().await;
    // The host stalls past every lease (the clock jumps at once, the
    // heartbeat had no chance to run). Both the heartbeat and the claim
    // loop wake up; whichever runs first, the leases are renewed before
    // anything is claimed.
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    GATES[STALL_GATE].open.notify_one();
    let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
    assert_eq!(out, Ok(2));
    worker.stop().await;
    // The step ran once, and no task was claimed again.
    assert_eq!(GATES[STALL_GATE].started.load(Ordering::SeqCst), 1);
    for t in tasks(&executor, id).await {
        assert_eq!(t.epoch.0, 1, "{t:?}");
    }
}

/// One connection, say: the step's query and the commit both need it.
static ONE_CONNECTION: Semaphore = Semaphore::const_new(1);

#[stent::durable]
async fn holds_what_the_commit_needs(x: u64) -> Result<u64, String> {
    let held = ONE_CONNECTION.acquire().await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(held);
    Ok(x * 3)
}

#[stent::durable]
async fn calls_holds_what_the_commit_needs(x: u64) -> Result<u64, String> {
    holds_what_the_commit_needs(x).await
}

#[tokio::test(start_paused = true)]
async fn a_step_polled_before_its_parents_commit_keeps_being_polled_during_it() {
    let backend = CountingBackend::new(MemoryBackend::new());
    *backend.commit_gate.lock().unwrap() = Some(&ONE_CONNECTION);
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor
        .dispatch(calls_holds_what_the_commit_needs(5))
        .await
        .unwrap();
    // The step takes the resource in its first poll, before the parent's
    // commit, which then waits for it: left unpolled, the step would never
    // give it back.
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .expect("the execution finishes");
    assert_eq!(out, Ok(15));
    worker.stop().await;
}

/// What the second step saw of the store when it began.
static ORDER_STORE: std::sync::OnceLock<(MemoryBackend, stent::InvocationId)> =
    std::sync::OnceLock::new();
static FIRST_RESULT_STORED: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);

#[stent::durable]
async fn after_the_gated_one() -> Result<u64, String> {
    let (store, root) = ORDER_STORE.get().ok_or("no store")?;
    let rows = store
        .read_journal(*root, Seq(0))
        .await
        .map_err(|e| e.to_string())?;
    *FIRST_RESULT_STORED.lock().unwrap() = Some(rows.iter().any(|r| r.kind == "call_completed"));
    Ok(2)
}

#[stent::durable]
async fn gated_then_another() -> Result<u64, String> {
    let first = gated(ORDER_GATE, 0).await?;
    Ok(first + after_the_gated_one().await?)
}

#[tokio::test(start_paused = true)]
async fn a_step_begins_only_once_the_results_before_it_are_stored() {
    let memory = MemoryBackend::new();
    let executor = Stent::new(memory.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(gated_then_another()).await.unwrap();
    GATES[ORDER_GATE].until_started().await;
    ORDER_STORE
        .set((memory, id.root_invocation()))
        .map_err(|_| "set twice")
        .unwrap();
    // The first step returns in its own task and hands its result to the
    // workflow, which then schedules the second: that one may be polled
    // only after the first one's result is stored.
    GATES[ORDER_GATE].open.notify_one();
    let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
    assert_eq!(out, Ok(3));
    worker.stop().await;
    assert_eq!(*FIRST_RESULT_STORED.lock().unwrap(), Some(true));
}

/// The time the test's clock reads (ms); moved by the workflow below.
static INLINE_CLOCK: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(1_800_000_000_000);
/// When `clocked_step`'s body began, on that clock.
static CLOCKED_STEP_BEGAN: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

struct InlineClock;

impl stent::Clock for InlineClock {
    fn now(&self) -> stent_journal::Timestamp {
        stent_journal::Timestamp(INLINE_CLOCK.load(Ordering::SeqCst))
    }
}

#[stent::durable]
async fn clocked_step(x: u64) -> Result<u64, String> {
    CLOCKED_STEP_BEGAN.store(INLINE_CLOCK.load(Ordering::SeqCst), Ordering::SeqCst);
    Ok(x + 1)
}

#[stent::durable]
async fn slow_before_its_step(x: u64) -> Result<u64, String> {
    // Time passes in the turn before the step is polled (a slow host).
    INLINE_CLOCK.fetch_add(50, Ordering::SeqCst);
    clocked_step(x).await
}

/// A step that returns in its parent's poll is stamped on the engine's
/// clock no earlier than its body began, even when time passed in its
/// parent's turn before the step was polled.
#[tokio::test(start_paused = true)]
async fn an_inline_steps_end_is_stamped_when_it_returned() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::builder(backend.clone()).clock(InlineClock).build();
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(slow_before_its_step(1)).await.unwrap();
    let out = executor.wait_for::<u64, String>(id, None).await.unwrap();
    worker.stop().await;
    assert_eq!(out, Ok(2));
    assert_eq!(backend.commits.load(Ordering::SeqCst), 1, "returned inline");
    let began = CLOCKED_STEP_BEGAN.load(Ordering::SeqCst);
    let step = tasks(&executor, id)
        .await
        .into_iter()
        .find(|t| t.invocation != id.root_invocation())
        .expect("the step's task");
    let rows = executor
        .backend()
        .read_journal(step.invocation, Seq(0))
        .await
        .expect("read journal");
    let completed = rows
        .iter()
        .find(|r| r.kind == "completed")
        .expect("the step's end");
    assert!(
        completed.recorded_at.0 >= began,
        "completed at {} before the body began at {began}",
        completed.recorded_at.0
    );
}
