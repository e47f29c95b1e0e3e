//! The conformance suite every stent storage backend must pass.
//!
//! Each public `async fn` here checks one behaviour of the storage traits of
//! [`stent_journal::store`] against a freshly constructed, empty backend, and
//! panics (via `assert!`) if the backend disagrees. The rules checked are the
//! ones the memory and SQLite backends document; a new backend (PostgreSQL,
//! ...) is correct when it passes the same functions.
//!
//! A backend crate runs the whole suite with one line in a test file: the
//! [`conformance_tests!`] macro expands to one
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per behaviour.
//! Its argument is an expression evaluating to a future that yields a
//! [`Fixture`]: any `Clone` backend is one, and a test may wrap a backend
//! together with whatever must outlive it (a temporary file, say). The test
//! crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//!
//! ```no_run
//! // backends/memory/tests/conformance.rs
//! stent_conformance::conformance_tests!(async { stent_memory::MemoryBackend::new() });
//! # fn main() {}
//! ```
//!
//! A backend that needs a server the machine may not have writes
//! `conformance_tests!(optional: factory)` instead: the factory's future then
//! yields an `Option` of a fixture, and each test returns at once (passing)
//! when it is `None`. The factory decides (and says, on stderr) when skipping
//! is allowed; it should panic instead when the server is required.

use std::collections::HashSet;
use std::sync::Arc;

use stent_journal::store::{
    ATTEMPT_FAILURES_KEPT, AttemptFailure, Backend, ClaimRequest, ClaimedTask, CleanupCounts,
    DeadLetterRecord, Delivery, ExecutionFilter, ExecutionOutcome, ExecutionRecord,
    ExecutionStatus, IdempotencyBegin, InboxId, LeaseGrant, NewEvent, NewExecution, NewInvocation,
    Routing, StoreError, TaskDisposition, TurnCommit, WorkerRecord,
};
use stent_journal::{
    CallKey, EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId,
};

/// Something a conformance test can run against: a backend, possibly bundled
/// with resources that must live as long as the test (a temporary directory).
pub trait Fixture: Send + 'static {
    /// A handle to the backend under test.
    fn backend(&self) -> Arc<dyn Backend>;
}

impl<B: Backend + Clone> Fixture for B {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.clone())
    }
}

/// Expands to one `#[tokio::test]` per behaviour of the suite, each given a
/// fresh fixture from `$factory` (an expression evaluating to a future whose
/// output implements [`Fixture`]; it is evaluated once per test).
///
/// With `optional: $factory`, the future yields `Option<impl Fixture>` and a
/// test whose factory gives `None` returns without checking anything (for
/// backends whose server may be absent; the factory reports the skip).
#[macro_export]
macro_rules! conformance_tests {
    (optional: $factory:expr) => {
        $crate::conformance_tests!(@mode optional, $factory);
    };
    (@mode $mode:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            $mode, $factory;
            create_execution_is_atomic,
            create_execution_rejects_duplicates,
            create_execution_with_lease,
            journal_reads_from_seq,
            journal_seq_is_unique_and_batch_rolls_back,
            commit_batch_is_all_or_nothing,
            steady_step_commits_write_every_row_or_none,
            a_step_spawned_and_finished_in_one_commit,
            stale_epoch_is_fenced_after_takeover,
            concurrent_claimers_claim_each_task_once,
            concurrent_commits_get_their_own_results,
            future_run_at_is_not_claimed_early,
            claim_orders_by_priority_run_at_and_creation,
            claim_respects_limit,
            claim_filters_by_queue,
            claim_filters_by_tags,
            claim_filters_by_function,
            claim_marks_execution_running,
            claim_with_journal_returns_whole_journals,
            lease_renewal_and_expiry,
            hold_extends_the_lease,
            park_waits_or_schedules,
            wake_during_turn_makes_parked_task_ready,
            spawn_with_and_without_lease,
            spawn_of_existing_invocation_conflicts,
            delivery_wakes_waiting_parent,
            turns_of_a_commit_see_the_earlier_ones,
            a_large_commit_of_independent_turns_is_one_after_another,
            consumed_inbox_is_removed_once,
            signal_to_unknown_execution_is_not_found,
            signal_to_an_ended_execution_is_refused,
            signals_are_ordered_and_consumed_once,
            signals_sent_under_a_key_are_stored_once,
            signal_wakes_tasks_of_its_execution,
            finish_with_outcome_updates_execution,
            pause_stores_report,
            resume_makes_paused_tasks_runnable,
            list_executions_pages_and_filters,
            list_executions_by_function_queue_tag_time_and_id,
            queue_depth_counts_ready_tasks,
            payload_bytes_round_trip,
            attempts_reset_on_commit_and_count_reclaims,
            forgiven_takeovers_leave_the_attempts,
            concurrency_limits_cap_live_leases,
            claims_take_only_the_code_versions_a_worker_runs,
            retry_reschedules_and_counts,
            failed_attempts_are_kept_each_with_its_time,
            dead_letter_list_get_and_replay,
            dead_letter_discard_finishes_the_task,
            cache_put_and_get_first_writer_wins,
            idempotency_begin_done_and_release,
            end_execution_cancels_unfinished_tasks,
            cleanup_removes_only_old_ended_executions,
            inspect_tasks_and_stats,
            workers_announce_and_retire,
            read_execution_journal_groups_by_invocation,
        );
    };
    ($factory:expr) => {
        $crate::conformance_tests!(@mode required, $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($mode:ident, $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $crate::__fixture!($mode, $factory) else {
                    return;
                };
                let backend = $crate::Fixture::backend(&fixture);
                $crate::$name(backend).await;
                drop(fixture);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fixture {
    (required, $factory:expr) => {
        Some(($factory).await)
    };
    (optional, $factory:expr) => {
        ($factory).await
    };
}

// ---------------------------------------------------------------- helpers

const T0: i64 = 1_700_000_000_000;

/// `T0 + ms`.
fn at(ms: i64) -> Timestamp {
    Timestamp(T0 + ms)
}

fn worker(name: &str) -> WorkerId {
    WorkerId::new(name)
}

fn started_bytes(id: InvocationId) -> Vec<u8> {
    let mut v = b"started:".to_vec();
    v.extend_from_slice(id.as_uuid().as_bytes());
    v
}

fn invocation(
    invocation: InvocationId,
    execution: ExecutionId,
    function: &str,
    routing: Routing,
    run_at: Timestamp,
) -> NewInvocation {
    NewInvocation {
        invocation,
        execution,
        function: function.to_string(),
        routing,
        run_at,
        started_event: started_bytes(invocation),
        lease: None,
    }
}

fn execution_with(function: &str, routing: Routing, created_at: Timestamp) -> NewExecution {
    let id = ExecutionId::new_random();
    NewExecution {
        id,
        function: function.to_string(),
        created_at,
        deadline: None,
        code_version: None,
        root: invocation(id.root_invocation(), id, function, routing, created_at),
    }
}

fn execution(function: &str, created_at: Timestamp) -> NewExecution {
    execution_with(function, Routing::default(), created_at)
}

fn routing(queue: &str, priority: i32, tags: &[&str]) -> Routing {
    Routing {
        queue: queue.to_string(),
        priority,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn request(worker_name: &str, now: Timestamp, functions: &[&str]) -> ClaimRequest {
    ClaimRequest {
        worker: worker(worker_name),
        now,
        lease_until: Timestamp(now.0 + 30_000),
        limit: 100,
        queues: None,
        tags: None,
        functions: functions.iter().map(|f| f.to_string()).collect(),
        concurrency_limits: Vec::new(),
        code_version: None,
        also_runs: Vec::new(),
    }
}

fn event(seq: u32, bytes: &[u8]) -> NewEvent {
    NewEvent {
        seq: Seq(seq),
        kind: EventKind::CallScheduled,
        call_key: None,
        bytes: bytes.to_vec(),
    }
}

fn turn(
    invocation: InvocationId,
    epoch: LeaseEpoch,
    now: Timestamp,
    disposition: TaskDisposition,
) -> TurnCommit {
    TurnCommit::bare(invocation, epoch, now, disposition)
}

/// A turn shaped like a sequential step's: one `CallCompleted` event of
/// 64 bytes at `seq`, stamped at `seq` ms, holding the lease. For the
/// backends' own tests (load, group commit, lost replies) that need many
/// such turns.
pub fn step_turn(inv: InvocationId, epoch: LeaseEpoch, seq: u32) -> TurnCommit {
    TurnCommit {
        events: vec![NewEvent {
            seq: Seq(seq),
            kind: EventKind::CallCompleted,
            call_key: None,
            bytes: vec![0x42; 64],
        }],
        ..TurnCommit::bare(
            inv,
            epoch,
            Timestamp(seq.into()),
            TaskDisposition::Hold {
                lease_until: Timestamp(1_000_000),
            },
        )
    }
}

fn hold(until: Timestamp) -> TaskDisposition {
    TaskDisposition::Hold { lease_until: until }
}

fn park(run_at: Option<Timestamp>) -> TaskDisposition {
    TaskDisposition::Park { run_at }
}

fn finish() -> TaskDisposition {
    TaskDisposition::Finish {
        deliver: None,
        execution: None,
    }
}

async fn create(backend: &Arc<dyn Backend>, exec: &NewExecution) {
    backend
        .create_execution(exec.clone())
        .await
        .expect("create_execution");
}

async fn claim(backend: &Arc<dyn Backend>, req: ClaimRequest) -> Vec<ClaimedTask> {
    backend.claim(req).await.expect("claim")
}

async fn claim_one(backend: &Arc<dyn Backend>, req: ClaimRequest) -> ClaimedTask {
    let mut got = claim(backend, req).await;
    assert_eq!(
        got.len(),
        1,
        "expected exactly one claimed task, got {got:?}"
    );
    got.remove(0)
}

async fn claimed_ids(backend: &Arc<dyn Backend>, req: ClaimRequest) -> Vec<InvocationId> {
    claim(backend, req)
        .await
        .into_iter()
        .map(|c| c.invocation)
        .collect()
}

async fn seqs(backend: &Arc<dyn Backend>, inv: InvocationId) -> Vec<u32> {
    backend
        .read_journal(inv, Seq(0))
        .await
        .expect("read_journal")
        .into_iter()
        .map(|r| r.seq.0)
        .collect()
}

async fn commit(backend: &Arc<dyn Backend>, turns: Vec<TurnCommit>) {
    backend.commit(turns).await.expect("commit");
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Creates an execution with function `f` at `T0` and claims its root as `w1`.
async fn running(backend: &Arc<dyn Backend>, f: &str) -> (NewExecution, ClaimedTask) {
    let exec = execution(f, at(0));
    create(backend, &exec).await;
    let c = claim_one(backend, request("w1", at(0), &[f])).await;
    assert_eq!(c.invocation, exec.root.invocation);
    (exec, c)
}

/// Commits a turn of the root of `exec` (claimed with `epoch`) that holds
/// its lease and spawns `n` ready `app::child` tasks at seqs 1..=n; their
/// ids, in seq order.
async fn spawn_children(
    backend: &Arc<dyn Backend>,
    exec: &NewExecution,
    epoch: LeaseEpoch,
    n: u32,
) -> Vec<InvocationId> {
    let parent = exec.root.invocation;
    let kids: Vec<InvocationId> = (1..=n)
        .map(|i| InvocationId::child_of(parent, Seq(i)))
        .collect();
    let mut t = turn(parent, epoch, at(1), hold(at(50_000)));
    t.spawn = kids
        .iter()
        .map(|k| invocation(*k, exec.id, "app::child", Routing::default(), at(1)))
        .collect();
    commit(backend, vec![t]).await;
    kids
}

// ---------------------------------------------------------------- executions

/// `create_execution` writes the execution (pending), the ready root task and
/// the `Started` event at seq 0 (recorded at `created_at`) together.
pub async fn create_execution_is_atomic(backend: Arc<dyn Backend>) {
    let mut exec = execution("app::root", at(5));
    exec.deadline = Some(at(60_000));
    exec.root.routing = routing("q1", 3, &["x"]);
    create(&backend, &exec).await;

    let rec = backend.execution(exec.id).await.unwrap().expect("record");
    assert_eq!(rec.id, exec.id);
    assert_eq!(rec.function, "app::root");
    assert_eq!(rec.status, ExecutionStatus::Pending);
    assert_eq!(rec.routing, routing("q1", 3, &["x"]));
    assert_eq!(rec.created_at, at(5));
    assert_eq!(rec.started_at, None);
    assert_eq!(rec.completed_at, None);
    assert_eq!(rec.deadline, Some(at(60_000)));
    assert_eq!(rec.terminal_event, None);
    assert_eq!(rec.pause_report, None);
    assert_eq!(rec.retries, 0);

    let rows = backend
        .read_journal(exec.root.invocation, Seq(0))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].seq, Seq(0));
    assert_eq!(rows[0].kind, "started");
    assert_eq!(rows[0].bytes, exec.root.started_event);
    assert_eq!(rows[0].recorded_at, at(5));

    assert!(
        backend
            .execution(ExecutionId::new_random())
            .await
            .unwrap()
            .is_none()
    );

    let mut req = request("w1", at(5), &["app::root"]);
    req.queues = Some(vec!["q1".into()]);
    let c = claim_one(&backend, req).await;
    assert_eq!(c.invocation, exec.root.invocation);
    assert_eq!(c.execution, exec.id);
    assert_eq!(c.function, "app::root");
    assert_eq!(c.epoch, LeaseEpoch(1));
    assert_eq!(c.attempts, 1);
    assert_eq!(c.retries, 0);
    assert_eq!(c.deadline, Some(at(60_000)));
}

/// Reusing an execution id is a `Conflict` and changes nothing.
pub async fn create_execution_rejects_duplicates(backend: Arc<dyn Backend>) {
    let exec = execution("app::root", at(0));
    create(&backend, &exec).await;
    let mut again = exec.clone();
    again.function = "app::other".into();
    again.root.started_event = b"other".to_vec();
    assert_conflict(backend.create_execution(again).await, "duplicate execution");
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.function, "app::root");
    let rows = backend
        .read_journal(exec.root.invocation, Seq(0))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bytes, exec.root.started_event);
    assert_eq!(
        claim(&backend, request("w", at(0), &["app::root", "app::other"]))
            .await
            .len(),
        1
    );
}

/// A root created with a lease is leased at epoch 1 to that worker (the
/// execution counts as running from `created_at`); it can commit at once
/// and is not handed to other claimers.
pub async fn create_execution_with_lease(backend: Arc<dyn Backend>) {
    let mut exec = execution("app::root", at(0));
    exec.root.lease = Some(LeaseGrant {
        worker: worker("w1"),
        until: at(10_000),
    });
    create(&backend, &exec).await;
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);
    assert_eq!(rec.started_at, Some(at(0)));
    assert!(
        claim(&backend, request("w2", at(1), &["app::root"]))
            .await
            .is_empty()
    );
    let lost = backend
        .renew_leases(
            &worker("w1"),
            &[(exec.root.invocation, LeaseEpoch(1))],
            at(0),
            at(20_000),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    let mut t = turn(exec.root.invocation, LeaseEpoch(1), at(2), finish());
    t.events.push(event(1, b"done"));
    commit(&backend, vec![t]).await;
    assert_eq!(seqs(&backend, exec.root.invocation).await, vec![0, 1]);
}

// ---------------------------------------------------------------- journal

/// `read_journal` returns rows from `from` on, in seq order, with the kind
/// name and the turn's `now` as `recorded_at`.
pub async fn journal_reads_from_seq(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::root").await;
    let inv = exec.root.invocation;
    let mut t = turn(inv, c.epoch, at(7), hold(at(40_000)));
    // Out of order on purpose: the read must sort by seq.
    t.events = vec![event(2, b"two"), event(1, b"one")];
    t.events[1].kind = EventKind::TimerStarted;
    commit(&backend, vec![t]).await;
    let mut t = turn(inv, c.epoch, at(9), hold(at(40_000)));
    t.events = vec![event(3, b"three")];
    commit(&backend, vec![t]).await;

    let all = backend.read_journal(inv, Seq(0)).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(all[1].kind, "timer_started");
    assert_eq!(all[1].bytes, b"one");
    assert_eq!(all[1].recorded_at, at(7));
    assert_eq!(all[2].kind, "call_scheduled");
    assert_eq!(all[3].recorded_at, at(9));

    let tail = backend.read_journal(inv, Seq(2)).await.unwrap();
    assert_eq!(tail.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(tail[0].bytes, b"two");
    assert!(backend.read_journal(inv, Seq(4)).await.unwrap().is_empty());
    assert!(
        backend
            .read_journal(InvocationId::child_of(inv, Seq(99)), Seq(0))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Writing an existing (invocation, seq) is a `Conflict` and rolls back the
/// whole batch, including the other events of the turn.
pub async fn journal_seq_is_unique_and_batch_rolls_back(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::root").await;
    let inv = exec.root.invocation;
    let mut t = turn(inv, c.epoch, at(1), hold(at(40_000)));
    t.events = vec![event(1, b"a")];
    commit(&backend, vec![t]).await;

    // seq 0 is the Started event.
    let mut t = turn(inv, c.epoch, at(2), hold(at(40_000)));
    t.events = vec![event(0, b"dup")];
    assert_conflict(backend.commit(vec![t]).await, "seq 0 rewritten");

    let mut t = turn(inv, c.epoch, at(2), park(None));
    t.events = vec![event(2, b"new"), event(1, b"dup")];
    assert_conflict(backend.commit(vec![t]).await, "seq 1 rewritten");

    let rows = backend.read_journal(inv, Seq(0)).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(rows[0].bytes, exec.root.started_event);
    assert_eq!(rows[1].bytes, b"a");

    // The refused Park did not release the lease: the same epoch still writes.
    let mut t = turn(inv, c.epoch, at(3), hold(at(40_000)));
    t.events = vec![event(2, b"b")];
    commit(&backend, vec![t]).await;
    assert_eq!(seqs(&backend, inv).await, vec![0, 1, 2]);
}

/// Several turns in one commit: a failure in a later turn undoes the earlier
/// turns (events, spawns, deliveries, disposition).
pub async fn commit_batch_is_all_or_nothing(backend: Arc<dyn Backend>) {
    let a = execution("app::a", at(0));
    let b = execution("app::b", at(0));
    create(&backend, &a).await;
    create(&backend, &b).await;
    let claimed = claim(&backend, request("w1", at(0), &["app::a", "app::b"])).await;
    assert_eq!(claimed.len(), 2);
    let epoch_of = |inv: InvocationId| {
        claimed
            .iter()
            .find(|c| c.invocation == inv)
            .map(|c| c.epoch)
            .expect("claimed")
    };
    let ainv = a.root.invocation;
    let binv = b.root.invocation;
    let child = InvocationId::child_of(ainv, Seq(1));

    let mut ta = turn(ainv, epoch_of(ainv), at(1), finish());
    ta.events = vec![event(1, b"a1")];
    ta.spawn = vec![invocation(
        child,
        a.id,
        "app::child",
        Routing::default(),
        at(1),
    )];
    let mut tb = turn(binv, LeaseEpoch(epoch_of(binv).0 + 7), at(1), finish());
    tb.events = vec![event(1, b"b1")];
    assert_lost_lease(
        backend.commit(vec![ta.clone(), tb]).await,
        (binv, LeaseEpoch(epoch_of(binv).0 + 7)),
    );
    assert_eq!(seqs(&backend, ainv).await, vec![0]);
    assert_eq!(seqs(&backend, binv).await, vec![0]);
    assert!(seqs(&backend, child).await.is_empty());
    assert!(
        claim(&backend, request("w2", at(2), &["app::child"]))
            .await
            .is_empty()
    );

    // A conflict in the second turn also undoes the first.
    let mut tb = turn(binv, epoch_of(binv), at(1), finish());
    tb.events = vec![event(0, b"dup")];
    assert_conflict(backend.commit(vec![ta.clone(), tb]).await, "batch");
    assert_eq!(seqs(&backend, ainv).await, vec![0]);
    assert!(seqs(&backend, child).await.is_empty());

    // Both turns valid: both applied.
    let mut tb = turn(binv, epoch_of(binv), at(1), finish());
    tb.events = vec![event(1, b"b1")];
    commit(&backend, vec![ta, tb]).await;
    assert_eq!(seqs(&backend, ainv).await, vec![0, 1]);
    assert_eq!(seqs(&backend, binv).await, vec![0, 1]);
    assert_eq!(seqs(&backend, child).await, vec![0]);
}

/// The commit of a steady run of inline steps: the parent's hold, with its
/// events and the next step's task (leased to this worker), and the finish
/// of the step the previous commit leased. Every row is written, whichever
/// order the turns come in; with the lease of either task lost, none is.
pub async fn steady_step_commits_write_every_row_or_none(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let inv = exec.root.invocation;
    let step = |i: u32| InvocationId::child_of(inv, Seq(2 * i + 1));
    let leased = |i: u32, now: Timestamp| {
        let mut s = invocation(step(i), exec.id, "app::step", Routing::default(), now);
        s.started_event = format!("started {i}").into_bytes();
        s.lease = Some(LeaseGrant {
            worker: worker("w1"),
            until: at(60_000),
        });
        s
    };
    // The first commit schedules step 0.
    let mut t = turn(inv, c.epoch, at(1), hold(at(60_000)));
    t.events = vec![event(1, b"call 0")];
    t.spawn = vec![leased(0, at(1))];
    commit(&backend, vec![t]).await;

    let steady = |i: u32, parent: LeaseEpoch, finished: LeaseEpoch, now: Timestamp| {
        let mut p = turn(inv, parent, now, hold(at(60_000)));
        p.events = vec![event(2 * i + 2, b"result"), event(2 * i + 3, b"call")];
        p.spawn = vec![leased(i + 1, now)];
        let mut f = turn(step(i), finished, now, finish());
        f.events = vec![event(1, b"completed")];
        vec![p, f]
    };
    let stale_parent = LeaseEpoch(c.epoch.0 + 1);
    for (parent, finished, lost) in [
        (stale_parent, LeaseEpoch(1), (inv, stale_parent)),
        (c.epoch, LeaseEpoch(2), (step(0), LeaseEpoch(2))),
    ] {
        assert_lost_lease(
            backend.commit(steady(0, parent, finished, at(2))).await,
            lost,
        );
        assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
        assert_eq!(seqs(&backend, step(0)).await, vec![0]);
        assert!(seqs(&backend, step(1)).await.is_empty());
    }

    commit(&backend, steady(0, c.epoch, LeaseEpoch(1), at(2))).await;
    let mut reversed = steady(1, c.epoch, LeaseEpoch(1), at(3));
    reversed.reverse();
    commit(&backend, reversed).await;
    assert_eq!(seqs(&backend, inv).await, vec![0, 1, 2, 3, 4, 5]);
    for i in 0..2 {
        let rows = backend.read_journal(step(i), Seq(0)).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].bytes, format!("started {i}").into_bytes());
        assert_eq!(rows[1].bytes, b"completed");
    }
    let rows = backend.read_journal(step(2), Seq(0)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].recorded_at, at(3));

    // Steps 0 and 1 are done; step 2 is leased to w1 until its lease runs
    // out, then claimable once; the parent's hold kept its lease.
    assert!(
        claim(
            &backend,
            request("w2", at(59_000), &["app::step", "app::parent"])
        )
        .await
        .is_empty()
    );
    let mut claimed = claim(&backend, request("w2", at(60_001), &["app::step"])).await;
    assert_eq!(claimed.len(), 1);
    let taken = claimed.remove(0);
    assert_eq!((taken.invocation, taken.epoch), (step(2), LeaseEpoch(2)));
}

/// A one-step workflow's commit: the root ends its execution, and the step
/// it ran inline is spawned (leased to this worker) and finished in the
/// same commit. Everything is written; with the root's lease lost, nothing
/// is.
pub async fn a_step_spawned_and_finished_in_one_commit(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::root").await;
    let inv = exec.root.invocation;
    let step = InvocationId::child_of(inv, Seq(1));
    let commit_with = |epoch: LeaseEpoch| {
        let mut root = turn(
            inv,
            epoch,
            at(5),
            TaskDisposition::Finish {
                deliver: None,
                execution: Some(ExecutionOutcome {
                    status: ExecutionStatus::Completed,
                    terminal_event: b"result".to_vec(),
                }),
            },
        );
        root.events = vec![event(1, b"call"), event(2, b"result")];
        let mut s = invocation(step, exec.id, "app::step", Routing::default(), at(5));
        s.started_event = b"started".to_vec();
        s.lease = Some(LeaseGrant {
            worker: worker("w1"),
            until: at(60_000),
        });
        root.spawn = vec![s];
        let mut finished = turn(step, LeaseEpoch(1), at(5), finish());
        finished.events = vec![event(1, b"completed")];
        vec![root, finished]
    };
    let stale = LeaseEpoch(c.epoch.0 + 1);
    assert_lost_lease(backend.commit(commit_with(stale)).await, (inv, stale));
    assert_eq!(seqs(&backend, inv).await, vec![0]);
    assert!(seqs(&backend, step).await.is_empty());
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);

    commit(&backend, commit_with(c.epoch)).await;
    assert_eq!(seqs(&backend, inv).await, vec![0, 1, 2]);
    let rows = backend.read_journal(step, Seq(0)).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0].bytes[..], &rows[1].bytes[..]),
        (&b"started"[..], &b"completed"[..])
    );
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Completed);
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"result"[..]));
    assert_eq!(rec.completed_at, Some(at(5)));
    // The step is done: never claimed, even once its lease would have run
    // out.
    assert!(
        claim(
            &backend,
            request("w2", at(60_001), &["app::step", "app::root"])
        )
        .await
        .is_empty()
    );
}

// ---------------------------------------------------------------- fencing

/// After its lease expires and another worker takes the task over (epoch + 1),
/// the first worker's writes are refused with `LeaseLost` and leave nothing.
pub async fn stale_epoch_is_fenced_after_takeover(backend: Arc<dyn Backend>) {
    let exec = execution("app::root", at(0));
    create(&backend, &exec).await;
    let inv = exec.root.invocation;
    let mut req = request("w1", at(0), &["app::root"]);
    req.lease_until = at(1_000);
    let first = claim_one(&backend, req).await;
    assert_eq!((first.epoch, first.attempts), (LeaseEpoch(1), 1));

    let mut t = turn(inv, first.epoch, at(10), hold(at(1_000)));
    t.events = vec![event(1, b"w1-1")];
    commit(&backend, vec![t]).await;

    // Not yet expired (lease_until < now is required): nobody takes it.
    assert!(
        claim(&backend, request("w2", at(1_000), &["app::root"]))
            .await
            .is_empty()
    );
    let second = claim_one(&backend, request("w2", at(1_001), &["app::root"])).await;
    assert_eq!(second.epoch, LeaseEpoch(2));
    // w1 committed a turn, so this is the first claim since.
    assert_eq!(second.attempts, 1);

    let mut stale = turn(inv, first.epoch, at(1_002), park(None));
    stale.events = vec![event(2, b"w1-2")];
    stale.spawn = vec![invocation(
        InvocationId::child_of(inv, Seq(2)),
        exec.id,
        "app::child",
        Routing::default(),
        at(0),
    )];
    assert_lost_lease(backend.commit(vec![stale]).await, (inv, first.epoch));
    assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    assert!(
        seqs(&backend, InvocationId::child_of(inv, Seq(2)))
            .await
            .is_empty()
    );

    let lost = backend
        .renew_leases(&worker("w1"), &[(inv, first.epoch)], at(0), at(50_000))
        .await
        .unwrap();
    assert_eq!(lost, vec![inv]);

    let mut t = turn(inv, second.epoch, at(1_003), finish());
    t.events = vec![event(2, b"w2-2")];
    commit(&backend, vec![t]).await;
    let rows = backend.read_journal(inv, Seq(2)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bytes, b"w2-2");

    // Once finished, even the current epoch may no longer write.
    let mut t = turn(inv, second.epoch, at(1_004), finish());
    t.events = vec![event(3, b"late")];
    assert!(matches!(
        backend.commit(vec![t]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    // An unknown invocation has no lease either.
    let t = turn(
        InvocationId::child_of(inv, Seq(50)),
        LeaseEpoch(1),
        at(1_004),
        finish(),
    );
    assert!(matches!(
        backend.commit(vec![t]).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

/// Six concurrent claimers over 50 ready tasks claim each exactly once, and
/// every claimer can commit what it claimed.
pub async fn concurrent_claimers_claim_each_task_once(backend: Arc<dyn Backend>) {
    let mut all = HashSet::new();
    for i in 0..50 {
        let exec = execution("app::job", at(i));
        create(&backend, &exec).await;
        all.insert(exec.root.invocation);
    }
    let mut handles = Vec::new();
    for w in 0..6 {
        let backend = backend.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut req = request(&format!("w{w}"), at(100), &["app::job"]);
                req.limit = 3;
                req.lease_until = at(10_000_000);
                let got = backend.claim(req).await.expect("claim");
                if got.is_empty() {
                    break;
                }
                let turns = got
                    .iter()
                    .map(|c| {
                        let mut t = turn(c.invocation, c.epoch, at(101), finish());
                        t.events = vec![event(1, w.to_string().as_bytes())];
                        t
                    })
                    .collect();
                backend.commit(turns).await.expect("commit of own claims");
                mine.extend(got);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for c in h.await.expect("claimer task") {
            assert_eq!(c.epoch, LeaseEpoch(1), "claimed twice: {c:?}");
            assert_eq!(c.attempts, 1);
            assert!(seen.insert(c.invocation), "claimed twice: {c:?}");
        }
    }
    assert_eq!(seen, all);
    for inv in all {
        assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    }
}

/// Many commits at once (as from a worker running many invocations), some
/// with a stale epoch and some conflicting, one of those only on its second
/// event: each gets its own result, and exactly the successful ones are kept
/// (a backend that groups concurrent commits into one transaction must still
/// keep them apart).
pub async fn concurrent_commits_get_their_own_results(backend: Arc<dyn Backend>) {
    const N: usize = 48;
    let mut invs = Vec::new();
    for i in 0..N {
        let exec = execution("app::job", at(i as i64));
        create(&backend, &exec).await;
        invs.push(exec.root.invocation);
    }
    let mut req = request("w1", at(100), &["app::job"]);
    req.lease_until = at(1_000);
    assert_eq!(claim(&backend, req).await.len(), N);
    // w1 keeps all but every third, which w2 takes over once expired.
    let kept: Vec<_> = (0..N)
        .filter(|i| i % 3 != 1)
        .map(|i| (invs[i], LeaseEpoch(1)))
        .collect();
    let lost = backend
        .renew_leases(&worker("w1"), &kept, at(0), at(10_000_000))
        .await
        .unwrap();
    assert!(lost.is_empty());
    let mut req = request("w2", at(2_000), &["app::job"]);
    req.lease_until = at(10_000_000);
    assert_eq!(claim(&backend, req).await.len(), N / 3);

    let mut handles = Vec::new();
    for (i, &inv) in invs.iter().enumerate() {
        let backend = backend.clone();
        handles.push(tokio::spawn(async move {
            let mut t = turn(inv, LeaseEpoch(1), at(2_001), hold(at(10_000_000)));
            t.events = match i % 6 {
                // seq 0 holds `Started` already.
                2 => vec![event(0, b"dup")],
                // The first event is fine, the second conflicts with it.
                5 => vec![event(1, b"a"), event(1, b"b")],
                _ => vec![event(1, b"ok")],
            };
            backend.commit(vec![t]).await
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let result = h.await.expect("commit task");
        match (i % 3, i % 6, result) {
            (1, _, Err(StoreError::LeaseLost { invocation, epoch })) => {
                assert_eq!((invocation, epoch), (invs[i], LeaseEpoch(1)));
            }
            (2, _, result) => assert_conflict(result, &format!("commit {i}")),
            (0, 0, Ok(())) => {}
            (0, 3, Ok(())) => {}
            (_, _, other) => panic!("commit {i}: unexpected {other:?}"),
        }
    }
    for (i, &inv) in invs.iter().enumerate() {
        let expected = if i % 3 == 0 { vec![0, 1] } else { vec![0] };
        assert_eq!(seqs(&backend, inv).await, expected, "invocation {i}");
    }
}

// ---------------------------------------------------------------- claiming

/// A task whose `run_at` is in the future is not claimed until `now` reaches it.
pub async fn future_run_at_is_not_claimed_early(backend: Arc<dyn Backend>) {
    let mut exec = execution("app::later", at(0));
    exec.root.run_at = at(5_000);
    create(&backend, &exec).await;
    assert!(
        claim(&backend, request("w", at(4_999), &["app::later"]))
            .await
            .is_empty()
    );
    let c = claim_one(&backend, request("w", at(5_000), &["app::later"])).await;
    assert_eq!(c.invocation, exec.root.invocation);
}

/// Claims come out by priority (highest first), then `run_at`, then creation order.
pub async fn claim_orders_by_priority_run_at_and_creation(backend: Arc<dyn Backend>) {
    let specs: [(i32, i64); 6] = [(0, 10), (5, 30), (0, 5), (5, 20), (-3, 0), (0, 5)];
    let mut ids = Vec::new();
    for (prio, run_at) in specs {
        let mut exec = execution_with("app::f", routing("default", prio, &[]), at(0));
        exec.root.run_at = at(run_at);
        create(&backend, &exec).await;
        ids.push(exec.root.invocation);
    }
    let mut req = request("w", at(100), &["app::f"]);
    req.limit = 4;
    let first = claimed_ids(&backend, req).await;
    assert_eq!(first, vec![ids[3], ids[1], ids[2], ids[5]]);
    let rest = claimed_ids(&backend, request("w", at(100), &["app::f"])).await;
    assert_eq!(rest, vec![ids[0], ids[4]]);
}

/// At most `limit` tasks are claimed; `limit` 0 claims nothing.
pub async fn claim_respects_limit(backend: Arc<dyn Backend>) {
    for i in 0..5 {
        create(&backend, &execution("app::f", at(i))).await;
    }
    let mut req = request("w", at(10), &["app::f"]);
    req.limit = 0;
    assert!(claim(&backend, req.clone()).await.is_empty());
    req.limit = 2;
    assert_eq!(claim(&backend, req.clone()).await.len(), 2);
    req.limit = 10;
    assert_eq!(claim(&backend, req.clone()).await.len(), 3);
    assert!(claim(&backend, req).await.is_empty());
}

/// `queues: Some(..)` claims only tasks of those queues; `None` claims any.
pub async fn claim_filters_by_queue(backend: Arc<dyn Backend>) {
    let a = execution_with("app::f", routing("a", 0, &[]), at(0));
    let b = execution_with("app::f", routing("b", 0, &[]), at(0));
    let c = execution_with("app::f", routing("c,a", 0, &[]), at(0));
    for e in [&a, &b, &c] {
        create(&backend, e).await;
    }
    let mut req = request("w", at(1), &["app::f"]);
    req.queues = Some(vec![]);
    assert!(claim(&backend, req.clone()).await.is_empty());
    req.queues = Some(vec!["a".into()]);
    assert_eq!(
        claimed_ids(&backend, req.clone()).await,
        vec![a.root.invocation]
    );
    req.queues = Some(vec!["x".into(), "b".into()]);
    assert_eq!(
        claimed_ids(&backend, req.clone()).await,
        vec![b.root.invocation]
    );
    req.queues = None;
    assert_eq!(claimed_ids(&backend, req).await, vec![c.root.invocation]);
}

/// `tags: Some(..)` claims only tasks carrying at least one of the tags; tags
/// may contain any characters.
pub async fn claim_filters_by_tags(backend: Arc<dyn Backend>) {
    let gpu = execution_with("app::f", routing("default", 0, &["gpu", "eu"]), at(0));
    let weird = execution_with(
        "app::f",
        routing("default", 0, &["a,b", "quote\"d", "[x]", "ünï %_"]),
        at(0),
    );
    let none = execution_with("app::f", routing("default", 0, &[]), at(0));
    for e in [&gpu, &weird, &none] {
        create(&backend, e).await;
    }
    let mut req = request("w", at(1), &["app::f"]);
    for miss in [
        vec![],
        vec!["a".to_string()],
        vec!["b".into()],
        vec!["x".into()],
        vec!["%".into()],
    ] {
        req.tags = Some(miss.clone());
        assert!(
            claim(&backend, req.clone()).await.is_empty(),
            "tags {miss:?} matched"
        );
    }
    req.tags = Some(vec!["us".into(), "eu".into()]);
    assert_eq!(
        claimed_ids(&backend, req.clone()).await,
        vec![gpu.root.invocation]
    );
    req.tags = Some(vec!["ünï %_".into()]);
    assert_eq!(
        claimed_ids(&backend, req.clone()).await,
        vec![weird.root.invocation]
    );
    req.tags = None;
    assert_eq!(claimed_ids(&backend, req).await, vec![none.root.invocation]);
}

/// Only tasks of the requested functions are claimed; an empty list claims nothing.
pub async fn claim_filters_by_function(backend: Arc<dyn Backend>) {
    let f = execution("app::f", at(0));
    let g = execution("app::g", at(0));
    create(&backend, &f).await;
    create(&backend, &g).await;
    assert!(claim(&backend, request("w", at(1), &[])).await.is_empty());
    assert!(
        claim(&backend, request("w", at(1), &["app"]))
            .await
            .is_empty()
    );
    assert_eq!(
        claimed_ids(&backend, request("w", at(1), &["app::g", "app::h"])).await,
        vec![g.root.invocation]
    );
    assert_eq!(
        claimed_ids(&backend, request("w", at(1), &["app::f", "app::g"])).await,
        vec![f.root.invocation]
    );
}

/// The first claim moves a pending execution to running with `started_at = now`;
/// later claims leave `started_at` alone.
pub async fn claim_marks_execution_running(backend: Arc<dyn Backend>) {
    let exec = execution("app::f", at(0));
    create(&backend, &exec).await;
    let mut req = request("w1", at(50), &["app::f"]);
    req.lease_until = at(100);
    claim_one(&backend, req).await;
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);
    assert_eq!(rec.started_at, Some(at(50)));
    let again = claim_one(&backend, request("w2", at(500), &["app::f"])).await;
    assert_eq!(again.epoch, LeaseEpoch(2));
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);
    assert_eq!(rec.started_at, Some(at(50)));
}

// ---------------------------------------------------------------- leases

/// `claim_with_journal` claims exactly as `claim` does, and any journal it
/// returns is the task's whole stored journal as read after the claim —
/// including the events a previous lease holder committed before its lease
/// ran out. With concurrency limits too, and nothing when nothing is due.
pub async fn claim_with_journal_returns_whole_journals(backend: Arc<dyn Backend>) {
    let (first, c) = running(&backend, "app::root").await;
    let mut t = turn(c.invocation, c.epoch, at(10), hold(at(1_000)));
    t.events = vec![event(1, b"one"), event(2, b"two")];
    commit(&backend, vec![t]).await;
    let second = execution("app::root", at(5));
    create(&backend, &second).await;
    let limited = execution("app::limited", at(6));
    create(&backend, &limited).await;

    let got = backend
        .claim_with_journal(request("w2", at(1_001), &["app::root"]))
        .await
        .expect("claim_with_journal");
    let ids: Vec<InvocationId> = got.iter().map(|(t, _)| t.invocation).collect();
    assert_eq!(ids, vec![first.root.invocation, second.root.invocation]);
    assert_eq!(got[0].0.epoch, LeaseEpoch(2));
    assert_eq!(got[1].0.epoch, LeaseEpoch(1));
    for (task, journal) in &got {
        assert_eq!(task.function, "app::root");
        if let Some(rows) = journal {
            let stored = backend.read_journal(task.invocation, Seq(0)).await.unwrap();
            assert_eq!(rows, &stored, "journal returned with the claim of {task:?}");
        }
    }
    if let Some(rows) = &got[0].1 {
        let bytes: Vec<&[u8]> = rows.iter().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(bytes[1..], [b"one".as_slice(), b"two".as_slice()]);
    }

    let mut req = request("w3", at(1_002), &["app::limited", "app::root"]);
    req.concurrency_limits = vec![("app::limited".to_string(), 1)];
    let got = backend
        .claim_with_journal(req.clone())
        .await
        .expect("claim_with_journal with limits");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.invocation, limited.root.invocation);
    if let Some(rows) = &got[0].1 {
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].bytes, started_bytes(limited.root.invocation));
    }
    assert!(backend.claim_with_journal(req).await.unwrap().is_empty());
}

/// Renewal keeps a lease; a lease left to expire is reclaimed with epoch + 1
/// and attempts + 1; renewing a lost lease reports it.
pub async fn lease_renewal_and_expiry(backend: Arc<dyn Backend>) {
    let a = execution("app::f", at(0));
    let b = execution("app::f", at(1));
    create(&backend, &a).await;
    create(&backend, &b).await;
    let mut req = request("w1", at(10), &["app::f"]);
    req.lease_until = at(1_000);
    let claimed = claim(&backend, req).await;
    assert_eq!(claimed.len(), 2);
    let ca = claimed[0].clone();
    let cb = claimed[1].clone();
    assert_eq!(ca.invocation, a.root.invocation);

    // Renew only a; wrong worker and wrong epoch are reported lost.
    let lost = backend
        .renew_leases(
            &worker("w1"),
            &[(ca.invocation, ca.epoch)],
            at(0),
            at(5_000),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    let lost = backend
        .renew_leases(
            &worker("w2"),
            &[(ca.invocation, ca.epoch)],
            at(0),
            at(9_000),
        )
        .await
        .unwrap();
    assert_eq!(lost, vec![ca.invocation]);
    let lost = backend
        .renew_leases(
            &worker("w1"),
            &[(ca.invocation, LeaseEpoch(ca.epoch.0 + 1))],
            at(0),
            at(9_000),
        )
        .await
        .unwrap();
    assert_eq!(lost, vec![ca.invocation]);

    // At 2_000 b's lease has expired; a's (renewed to 5_000) has not.
    let taken = claim_one(&backend, request("w2", at(2_000), &["app::f"])).await;
    assert_eq!(taken.invocation, cb.invocation);
    assert_eq!(taken.epoch, LeaseEpoch(cb.epoch.0 + 1));
    assert_eq!(taken.attempts, cb.attempts + 1);

    let lost = backend
        .renew_leases(
            &worker("w1"),
            &[(ca.invocation, ca.epoch), (cb.invocation, cb.epoch)],
            at(0),
            at(6_000),
        )
        .await
        .unwrap();
    assert_eq!(lost, vec![cb.invocation]);
    // a is now held until 6_000.
    assert!(
        claim(&backend, request("w3", at(5_500), &["app::f"]))
            .await
            .is_empty()
    );
    let late = claim_one(&backend, request("w3", at(6_001), &["app::f"])).await;
    assert_eq!(late.invocation, ca.invocation);
    assert_eq!((late.epoch, late.attempts), (LeaseEpoch(2), 2));
    // Unknown invocations are lost too.
    let ghost = InvocationId::child_of(ca.invocation, Seq(9));
    let lost = backend
        .renew_leases(&worker("w3"), &[(ghost, LeaseEpoch(1))], at(0), at(9_000))
        .await
        .unwrap();
    assert_eq!(lost, vec![ghost]);
}

/// `Hold` keeps the lease and moves its expiry.
pub async fn hold_extends_the_lease(backend: Arc<dyn Backend>) {
    let exec = execution("app::f", at(0));
    create(&backend, &exec).await;
    let mut req = request("w1", at(0), &["app::f"]);
    req.lease_until = at(100);
    let c = claim_one(&backend, req).await;
    commit(
        &backend,
        vec![turn(c.invocation, c.epoch, at(50), hold(at(1_000)))],
    )
    .await;
    assert!(
        claim(&backend, request("w2", at(500), &["app::f"]))
            .await
            .is_empty()
    );
    assert_eq!(backend.queue_depth(None, at(500)).await.unwrap(), 0);
    let t = claim_one(&backend, request("w2", at(1_001), &["app::f"])).await;
    assert_eq!(t.epoch, LeaseEpoch(2));
}

// ---------------------------------------------------------------- parking

/// `Park { run_at: None }` waits (never claimed by time alone); `Park {
/// run_at: Some(t) }` becomes claimable at `t`. Both release the lease.
pub async fn park_waits_or_schedules(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    commit(&backend, vec![turn(inv, c.epoch, at(10), park(None))]).await;
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::f"]))
            .await
            .is_empty()
    );
    assert_eq!(backend.queue_depth(None, at(10)).await.unwrap(), 0);
    // The released lease no longer renews, and the old epoch no longer writes.
    let lost = backend
        .renew_leases(&worker("w1"), &[(inv, c.epoch)], at(0), at(99_999))
        .await
        .unwrap();
    assert_eq!(lost, vec![inv]);
    assert!(matches!(
        backend
            .commit(vec![turn(inv, c.epoch, at(11), park(None))])
            .await,
        Err(StoreError::LeaseLost { .. })
    ));

    // Wake it with a signal, then park it on a timer.
    backend
        .send_signal(exec.id, "go", vec![], at(20))
        .await
        .unwrap();
    let c2 = claim_one(&backend, request("w", at(20), &["app::f"])).await;
    assert_eq!(c2.epoch, LeaseEpoch(2));
    commit(
        &backend,
        vec![turn(inv, c2.epoch, at(30), park(Some(at(5_000))))],
    )
    .await;
    assert_eq!(backend.queue_depth(None, at(30)).await.unwrap(), 1);
    assert!(
        claim(&backend, request("w", at(4_999), &["app::f"]))
            .await
            .is_empty()
    );
    let c3 = claim_one(&backend, request("w", at(5_000), &["app::f"])).await;
    // Every earlier claim committed, so attempts start over each time.
    assert_eq!((c3.epoch, c3.attempts), (LeaseEpoch(3), 1));
}

/// A wake (signal or delivery) that arrives while the task is leased makes the
/// following `Park` leave it ready at once, whatever its `run_at`.
pub async fn wake_during_turn_makes_parked_task_ready(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    backend
        .send_signal(exec.id, "poke", b"1".to_vec(), at(5))
        .await
        .unwrap();
    commit(&backend, vec![turn(inv, c.epoch, at(10), park(None))]).await;
    let c2 = claim_one(&backend, request("w", at(10), &["app::f"])).await;
    assert_eq!(c2.epoch, LeaseEpoch(2));

    // The claim cleared the wake flag: parking again without a wake waits.
    commit(
        &backend,
        vec![turn(inv, c2.epoch, at(11), park(Some(at(90_000))))],
    )
    .await;
    assert!(
        claim(&backend, request("w", at(12), &["app::f"]))
            .await
            .is_empty()
    );

    // A wake on a ready task with a later run_at brings it forward to now.
    backend
        .send_signal(exec.id, "poke", b"2".to_vec(), at(13))
        .await
        .unwrap();
    let c3 = claim_one(&backend, request("w", at(13), &["app::f"])).await;
    assert_eq!(c3.epoch, LeaseEpoch(3));

    // A wake during the turn beats a timer in the Park.
    backend
        .send_signal(exec.id, "poke", b"3".to_vec(), at(14))
        .await
        .unwrap();
    commit(
        &backend,
        vec![turn(inv, c3.epoch, at(15), park(Some(at(90_000))))],
    )
    .await;
    let c4 = claim_one(&backend, request("w", at(15), &["app::f"])).await;
    assert_eq!(c4.epoch, LeaseEpoch(4));
}

// ---------------------------------------------------------------- spawning

/// A spawn without a lease is a ready task (claimable at its `run_at`, epoch
/// 1 on first claim); with a lease it is leased at epoch 1 to the grantee and
/// can commit at once. Each starts with its `Started` event at seq 0.
pub async fn spawn_with_and_without_lease(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let inv = exec.root.invocation;
    let free = InvocationId::child_of(inv, Seq(1));
    let leased = InvocationId::child_of(inv, Seq(2));
    let mut t = turn(inv, c.epoch, at(100), park(None));
    t.events = vec![event(1, b"s1"), event(2, b"s2")];
    let mut free_inv = invocation(free, exec.id, "app::child", routing("q", 0, &[]), at(200));
    free_inv.started_event = b"free".to_vec();
    let mut leased_inv = invocation(leased, exec.id, "app::child", Routing::default(), at(100));
    leased_inv.started_event = b"leased".to_vec();
    leased_inv.lease = Some(LeaseGrant {
        worker: worker("w1"),
        until: at(10_000),
    });
    t.spawn = vec![free_inv, leased_inv];
    commit(&backend, vec![t]).await;

    for (id, bytes) in [(free, &b"free"[..]), (leased, &b"leased"[..])] {
        let rows = backend.read_journal(id, Seq(0)).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, "started");
        assert_eq!(rows[0].bytes, bytes);
        assert_eq!(rows[0].recorded_at, at(100));
    }
    assert_eq!(backend.queue_depth(Some("q"), at(100)).await.unwrap(), 1);

    // The leased child is held by w1 at epoch 1.
    assert!(
        claim(&backend, request("w2", at(150), &["app::child"]))
            .await
            .is_empty()
    );
    let lost = backend
        .renew_leases(&worker("w1"), &[(leased, LeaseEpoch(1))], at(0), at(20_000))
        .await
        .unwrap();
    assert!(lost.is_empty());
    let mut t = turn(leased, LeaseEpoch(1), at(160), finish());
    t.events = vec![event(1, b"child done")];
    commit(&backend, vec![t]).await;

    let got = claim_one(&backend, request("w2", at(200), &["app::child"])).await;
    assert_eq!(got.invocation, free);
    assert_eq!(got.execution, exec.id);
    assert_eq!((got.epoch, got.attempts), (LeaseEpoch(1), 1));
}

/// Spawning an invocation id that exists is a `Conflict`; the turn is undone.
pub async fn spawn_of_existing_invocation_conflicts(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let inv = exec.root.invocation;
    let child = InvocationId::child_of(inv, Seq(1));
    let mut t = turn(inv, c.epoch, at(1), hold(at(50_000)));
    t.events = vec![event(1, b"s1")];
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(1),
    )];
    commit(&backend, vec![t]).await;

    let mut t = turn(inv, c.epoch, at(2), park(None));
    t.events = vec![event(2, b"s2")];
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(2),
    )];
    assert_conflict(backend.commit(vec![t]).await, "respawn");
    let mut t = turn(inv, c.epoch, at(2), park(None));
    t.spawn = vec![invocation(
        inv,
        exec.id,
        "app::child",
        Routing::default(),
        at(2),
    )];
    assert_conflict(backend.commit(vec![t]).await, "spawn of self");
    assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    assert_eq!(seqs(&backend, child).await, vec![0]);
    // Still leased (the Park was undone) and the child was claimable once only.
    commit(&backend, vec![turn(inv, c.epoch, at(3), hold(at(50_000)))]).await;
    assert_eq!(
        claim(&backend, request("w", at(3), &["app::child"]))
            .await
            .len(),
        1
    );
}

// ---------------------------------------------------------------- delivery

/// `Finish { deliver }` puts the result in the parent's inbox and makes a
/// waiting parent ready.
pub async fn delivery_wakes_waiting_parent(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let parent = exec.root.invocation;
    let child = InvocationId::child_of(parent, Seq(1));
    let mut t = turn(parent, c.epoch, at(1), park(None));
    t.events = vec![event(1, b"scheduled")];
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(1),
    )];
    commit(&backend, vec![t]).await;
    assert!(backend.inbox(parent).await.unwrap().is_empty());

    let cc = claim_one(&backend, request("w2", at(2), &["app::child"])).await;
    assert!(
        claim(&backend, request("w", at(2), &["app::parent"]))
            .await
            .is_empty()
    );
    let mut t = turn(
        child,
        cc.epoch,
        at(3),
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent,
                event: b"result".to_vec(),
            }),
            execution: None,
        },
    );
    t.events = vec![event(1, b"completed")];
    commit(&backend, vec![t]).await;

    let inbox = backend.inbox(parent).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].event, b"result");
    assert!(backend.inbox(child).await.unwrap().is_empty());
    let cp = claim_one(&backend, request("w", at(3), &["app::parent"])).await;
    assert_eq!(cp.epoch, LeaseEpoch(2));
    // The child is done: never claimed again.
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::child"]))
            .await
            .is_empty()
    );
    // The execution was not finished by the child.
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);

    // In one batch: a child delivers to its leased parent, then the parent
    // parks; the delivery earlier in the batch makes the parent ready.
    let child2 = InvocationId::child_of(parent, Seq(2));
    let mut t = turn(parent, cp.epoch, at(4), hold(at(50_000)));
    t.spawn = vec![invocation(
        child2,
        exec.id,
        "app::child",
        Routing::default(),
        at(4),
    )];
    commit(&backend, vec![t]).await;
    let cc2 = claim_one(&backend, request("w2", at(5), &["app::child"])).await;
    let child_turn = turn(
        child2,
        cc2.epoch,
        at(6),
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent,
                event: b"second".to_vec(),
            }),
            execution: None,
        },
    );
    let parent_turn = turn(parent, cp.epoch, at(6), park(None));
    commit(&backend, vec![child_turn, parent_turn]).await;
    let again = claim_one(&backend, request("w", at(6), &["app::parent"])).await;
    assert_eq!(again.epoch, LeaseEpoch(3));
    assert_eq!(backend.inbox(parent).await.unwrap().len(), 2);
}

/// The turns of one commit apply in order, each seeing the writes of those
/// before it: a turn of a child spawned (leased) earlier in the commit holds
/// its lease; a delivery to a parent that then parks makes it ready at the
/// time of its own turn; of two outcomes of one execution, the later wins.
pub async fn turns_of_a_commit_see_the_earlier_ones(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let parent = exec.root.invocation;
    let kids: Vec<InvocationId> = (1..=3)
        .map(|i| InvocationId::child_of(parent, Seq(i)))
        .collect();
    let leased = |id: InvocationId| {
        let mut inv = invocation(id, exec.id, "app::child", Routing::default(), at(1));
        inv.lease = Some(LeaseGrant {
            worker: worker("w1"),
            until: at(50_000),
        });
        inv
    };
    // The parent spawns three leased children; the first of them finishes
    // (delivering) in the same commit.
    let mut spawn = turn(parent, c.epoch, at(1), hold(at(50_000)));
    spawn.events = vec![event(1, b"s1"), event(2, b"s2"), event(3, b"s3")];
    spawn.spawn = kids.iter().map(|&k| leased(k)).collect();
    let mut first = turn(
        kids[0],
        LeaseEpoch(1),
        at(2),
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent,
                event: b"r1".to_vec(),
            }),
            execution: None,
        },
    );
    first.events = vec![event(1, b"done")];
    commit(&backend, vec![spawn, first]).await;
    assert_eq!(seqs(&backend, parent).await, vec![0, 1, 2, 3]);
    assert_eq!(seqs(&backend, kids[0]).await, vec![0, 1]);
    assert_eq!(backend.inbox(parent).await.unwrap().len(), 1);

    // A delivery at 10, then the parent parks at 20: woken during its turn,
    // it is ready at 20 (its own time), not at 10.
    let second = turn(
        kids[1],
        LeaseEpoch(1),
        at(10),
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent,
                event: b"r2".to_vec(),
            }),
            execution: None,
        },
    );
    commit(
        &backend,
        vec![second, turn(parent, c.epoch, at(20), park(None))],
    )
    .await;
    assert!(
        claim(&backend, request("w", at(15), &["app::parent"]))
            .await
            .is_empty()
    );
    let cp = claim_one(&backend, request("w", at(20), &["app::parent"])).await;
    assert_eq!(cp.epoch, LeaseEpoch(c.epoch.0 + 1));

    // Two outcomes of the execution in one commit: the later one stands.
    let outcome = |status: ExecutionStatus, bytes: &[u8]| TaskDisposition::Finish {
        deliver: None,
        execution: Some(ExecutionOutcome {
            status,
            terminal_event: bytes.to_vec(),
        }),
    };
    commit(
        &backend,
        vec![
            turn(
                kids[2],
                LeaseEpoch(1),
                at(30),
                outcome(ExecutionStatus::Failed, b"child failed"),
            ),
            turn(
                parent,
                cp.epoch,
                at(31),
                outcome(ExecutionStatus::Completed, b"done"),
            ),
        ],
    )
    .await;
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Completed);
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"done"[..]));
    assert_eq!(rec.completed_at, Some(at(31)));
}

/// A commit of many turns of distinct invocations, none delivering to
/// another's (a fan-out's children, a group commit of many callers), has
/// the effect of its turns applied one after another: every kind of
/// disposition, deliveries in order into one inbox (the parent ready at the
/// earliest of their times), a step spawned and finished in the commit,
/// outcomes of two executions. A lost lease or a missing inbox item in any
/// turn keeps nothing of any.
pub async fn a_large_commit_of_independent_turns_is_one_after_another(backend: Arc<dyn Backend>) {
    let (a, ca) = running(&backend, "app::a").await;
    let (b, cb) = running(&backend, "app::b").await;
    let parent = a.root.invocation;
    let kids = spawn_children(&backend, &a, ca.epoch, 6).await;
    commit(&backend, vec![turn(parent, ca.epoch, at(2), park(None))]).await;
    let claimed = claim(&backend, request("w2", at(3), &["app::child"])).await;
    assert_eq!(claimed.len(), kids.len());
    let epoch = |k: usize| {
        claimed
            .iter()
            .find(|c| c.invocation == kids[k])
            .map(|c| c.epoch)
            .expect("claimed")
    };
    let grandchild = InvocationId::child_of(kids[5], Seq(1));
    let batch = |lost: Option<usize>| {
        let epoch_of = |k: usize| match lost {
            Some(l) if l == k => LeaseEpoch(epoch(k).0 + 9),
            _ => epoch(k),
        };
        let mut turns = vec![
            turn(kids[0], epoch_of(0), at(40), deliver_to(parent, b"r1")),
            turn(kids[1], epoch_of(1), at(30), deliver_to(parent, b"r2")),
            turn(kids[2], epoch_of(2), at(10), hold(at(50_000))),
            turn(kids[3], epoch_of(3), at(10), park(None)),
            turn(kids[4], epoch_of(4), at(10), park(Some(at(500)))),
            turn(
                kids[5],
                epoch_of(5),
                at(10),
                outcome(ExecutionStatus::Failed, b"child failed"),
            ),
            turn(
                b.root.invocation,
                cb.epoch,
                at(11),
                outcome(ExecutionStatus::Completed, b"b done"),
            ),
            turn(grandchild, LeaseEpoch(1), at(10), finish()),
        ];
        for (i, t) in turns.iter_mut().enumerate() {
            t.events = (1..=i as u32 % 3 + 1).map(|s| event(s, b"e")).collect();
        }
        let mut g = invocation(grandchild, a.id, "app::child", Routing::default(), at(10));
        g.lease = Some(LeaseGrant {
            worker: worker("w2"),
            until: at(50_000),
        });
        turns[5].spawn = vec![g];
        turns
    };
    for lost in [3, 0, 5] {
        assert_lost_lease(
            backend.commit(batch(Some(lost))).await,
            (kids[lost], LeaseEpoch(epoch(lost).0 + 9)),
        );
        for k in &kids {
            assert_eq!(seqs(&backend, *k).await, vec![0]);
        }
        assert!(seqs(&backend, grandchild).await.is_empty());
        assert!(backend.inbox(parent).await.unwrap().is_empty());
        assert_eq!(
            record(&backend, a.id).await.status,
            ExecutionStatus::Running
        );
        assert_eq!(
            record(&backend, b.id).await.status,
            ExecutionStatus::Running
        );
    }

    commit(&backend, batch(None)).await;
    let committed = batch(None);
    for t in &committed {
        let mut want: Vec<u32> = t.events.iter().map(|e| e.seq.0).collect();
        want.insert(0, 0);
        assert_eq!(seqs(&backend, t.invocation).await, want);
    }
    let inbox = backend.inbox(parent).await.unwrap();
    assert_eq!(
        inbox.iter().map(|i| &i.event[..]).collect::<Vec<_>>(),
        [&b"r1"[..], &b"r2"[..]]
    );
    assert_eq!(
        record(&backend, b.id).await.terminal_event.as_deref(),
        Some(&b"b done"[..])
    );
    let ra = record(&backend, a.id).await;
    assert_eq!(
        (ra.status, ra.completed_at),
        (ExecutionStatus::Failed, Some(at(10)))
    );
    // The parent, woken at 40 and then at 30, is ready at 30; the child
    // parked until 500 then; the held child is still leased, the parked
    // one waits, the finished ones and the grandchild are done.
    assert!(
        claim(&backend, request("w3", at(29), &["app::a", "app::child"]))
            .await
            .is_empty()
    );
    let cp = claim_one(&backend, request("w3", at(30), &["app::a"])).await;
    assert_eq!(cp.invocation, parent);
    let mut again = claimed_ids(&backend, request("w3", at(60_000), &["app::child"])).await;
    again.sort();
    let mut want = vec![kids[2], kids[4]];
    want.sort();
    assert_eq!(again, want);

    // The parent consumes its inbox beside two other turns; one item
    // missing keeps nothing.
    let c4 = epoch(4).0 + 1;
    let consume = |ids: Vec<InboxId>| {
        let mut p = turn(parent, cp.epoch, at(60_001), park(None));
        p.consumed_inbox = ids;
        vec![
            turn(kids[2], LeaseEpoch(epoch(2).0 + 1), at(60_001), finish()),
            turn(kids[4], LeaseEpoch(c4), at(60_001), finish()),
            p,
        ]
    };
    let gone = InboxId(inbox[1].id.0 + 1_000);
    assert_conflict(
        backend.commit(consume(vec![inbox[0].id, gone])).await,
        "an inbox item missing",
    );
    assert_eq!(backend.inbox(parent).await.unwrap().len(), 2);
    commit(&backend, consume(vec![inbox[0].id, inbox[1].id])).await;
    assert!(backend.inbox(parent).await.unwrap().is_empty());
    assert!(
        claim(
            &backend,
            request("w4", at(200_000), &["app::a", "app::child"])
        )
        .await
        .is_empty()
    );
}

/// Inbox items consumed by a turn disappear; consuming one that is gone, or
/// that belongs to another invocation, is a `Conflict`.
pub async fn consumed_inbox_is_removed_once(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let parent = exec.root.invocation;
    spawn_children(&backend, &exec, c.epoch, 3).await;
    let claimed = claim(&backend, request("w2", at(2), &["app::child"])).await;
    assert_eq!(claimed.len(), 3);
    let turns = claimed
        .iter()
        .enumerate()
        .map(|(i, cc)| {
            turn(
                cc.invocation,
                cc.epoch,
                at(3),
                TaskDisposition::Finish {
                    deliver: Some(Delivery {
                        parent,
                        event: vec![i as u8],
                    }),
                    execution: None,
                },
            )
        })
        .collect();
    commit(&backend, turns).await;
    let inbox = backend.inbox(parent).await.unwrap();
    assert_eq!(
        inbox.iter().map(|i| i.event.clone()).collect::<Vec<_>>(),
        vec![vec![0u8], vec![1], vec![2]]
    );
    assert!(inbox.windows(2).all(|w| w[0].id < w[1].id));

    let mut t = turn(parent, c.epoch, at(4), hold(at(50_000)));
    t.events = vec![event(1, &[0]), event(2, &[1])];
    t.consumed_inbox = vec![inbox[0].id, inbox[1].id];
    commit(&backend, vec![t]).await;
    let left = backend.inbox(parent).await.unwrap();
    assert_eq!(left, vec![inbox[2].clone()]);

    let mut t = turn(parent, c.epoch, at(5), hold(at(50_000)));
    t.events = vec![event(3, &[2])];
    t.consumed_inbox = vec![inbox[2].id, inbox[0].id];
    assert_conflict(backend.commit(vec![t]).await, "inbox consumed twice");
    assert_eq!(backend.inbox(parent).await.unwrap().len(), 1);
    assert_eq!(seqs(&backend, parent).await, vec![0, 1, 2]);

    // Another invocation may not consume the parent's inbox.
    let other = execution("app::other", at(0));
    create(&backend, &other).await;
    let co = claim_one(&backend, request("w3", at(6), &["app::other"])).await;
    let mut t = turn(co.invocation, co.epoch, at(6), hold(at(50_000)));
    t.consumed_inbox = vec![inbox[2].id];
    assert_conflict(backend.commit(vec![t]).await, "foreign inbox");
    assert_eq!(backend.inbox(parent).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------- signals

/// A signal to an execution that does not exist is `NotFound`.
pub async fn signal_to_unknown_execution_is_not_found(backend: Arc<dyn Backend>) {
    match backend
        .send_signal(ExecutionId::new_random(), "go", vec![1], at(0))
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// A signal to an execution that has ended (completed, or cancelled) is
/// refused with `ExecutionEnded` naming how it ended, and nothing is stored;
/// one to a paused execution is kept (it may be resumed).
pub async fn signal_to_an_ended_execution_is_refused(backend: Arc<dyn Backend>) {
    let (done, c) = running(&backend, "app::f").await;
    commit(
        &backend,
        vec![turn(
            done.root.invocation,
            c.epoch,
            at(5),
            outcome(ExecutionStatus::Completed, b"done"),
        )],
    )
    .await;
    let cancelled = execution("app::g", at(0));
    create(&backend, &cancelled).await;
    backend
        .end_execution(
            cancelled.id,
            ExecutionStatus::Cancelled,
            b"x".to_vec(),
            at(6),
        )
        .await
        .unwrap();
    for (id, status) in [
        (done.id, ExecutionStatus::Completed),
        (cancelled.id, ExecutionStatus::Cancelled),
    ] {
        match backend.send_signal(id, "go", vec![1], at(7)).await {
            Err(StoreError::ExecutionEnded {
                execution,
                status: s,
            }) => {
                assert_eq!((execution, s), (id, status));
            }
            other => panic!("expected ExecutionEnded, got {other:?}"),
        }
        let kept = backend
            .pending_signals(id, &["go".to_string()])
            .await
            .unwrap();
        assert!(kept.is_empty(), "a refused signal was stored: {kept:?}");
    }
    let (paused, cp) = running(&backend, "app::h").await;
    commit(
        &backend,
        vec![turn(
            paused.root.invocation,
            cp.epoch,
            at(8),
            TaskDisposition::Pause {
                report: "diverged".into(),
            },
        )],
    )
    .await;
    backend
        .send_signal(paused.id, "go", vec![1], at(9))
        .await
        .expect("a paused execution takes signals");
}

/// A signal sent under a key is stored once per execution and key: sent
/// again (a lost reply) it returns the first id, even after the execution
/// ended; another name or payload under that key is a `Conflict` that
/// stores nothing; the same key on another execution, another key, or no
/// key at all stores a new signal.
pub async fn signals_sent_under_a_key_are_stored_once(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let other = execution("app::g", at(0));
    create(&backend, &other).await;
    let send = |id, name: &'static str, payload: &'static [u8], key: Option<&'static str>| {
        let backend = backend.clone();
        async move {
            backend
                .send_signal_keyed(id, name, payload.to_vec(), key, at(2))
                .await
        }
    };
    let first = send(exec.id, "go", b"1", Some("k1")).await.unwrap();
    assert_eq!(send(exec.id, "go", b"1", Some("k1")).await.unwrap(), first);
    for (name, payload) in [("go", &b"2"[..]), ("stop", &b"1"[..])] {
        match backend
            .send_signal_keyed(exec.id, name, payload.to_vec(), Some("k1"), at(3))
            .await
        {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    let second = send(exec.id, "go", b"1", Some("k2")).await.unwrap();
    let elsewhere = send(other.id, "go", b"1", Some("k1")).await.unwrap();
    let plain = [
        send(exec.id, "go", b"1", None).await.unwrap(),
        send(exec.id, "go", b"1", None).await.unwrap(),
    ];
    let pending: Vec<_> = backend
        .pending_signals(exec.id, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(pending, [first, second, plain[0], plain[1]]);
    assert_ne!(elsewhere, first);
    // Sent again at the same time: one is stored, all learn its id.
    let racing: Vec<_> = (0..8)
        .map(|_| tokio::spawn(send(exec.id, "go", b"r", Some("race"))))
        .collect();
    let mut ids = Vec::new();
    for r in racing {
        ids.push(r.await.expect("task").expect("a racing send"));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let stored = backend.pending_signals(exec.id, &[]).await.unwrap().len();
    assert_eq!(stored, 5, "the racing sends stored one signal");
    commit(
        &backend,
        vec![turn(
            exec.root.invocation,
            c.epoch,
            at(5),
            outcome(ExecutionStatus::Completed, b"done"),
        )],
    )
    .await;
    // Sent before the end: the retry learns it was stored.
    assert_eq!(send(exec.id, "go", b"1", Some("k1")).await.unwrap(), first);
    match send(exec.id, "go", b"1", Some("k3")).await {
        Err(StoreError::ExecutionEnded { .. }) => {}
        other => panic!("a new key after the end: expected ExecutionEnded, got {other:?}"),
    }
}

/// Pending signals come in id order, filtered by name (every name for none)
/// and execution; a consumed signal is gone, and consuming it again is a
/// `Conflict`.
pub async fn signals_are_ordered_and_consumed_once(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let other = execution("app::g", at(0));
    create(&backend, &other).await;
    let inv = exec.root.invocation;
    let s1 = backend
        .send_signal(exec.id, "approve", b"one".to_vec(), at(1))
        .await
        .unwrap();
    let s2 = backend
        .send_signal(exec.id, "reject", b"two".to_vec(), at(2))
        .await
        .unwrap();
    let s3 = backend
        .send_signal(exec.id, "approve", b"three".to_vec(), at(3))
        .await
        .unwrap();
    let so = backend
        .send_signal(other.id, "approve", b"other".to_vec(), at(3))
        .await
        .unwrap();
    assert!(s1 < s2 && s2 < s3);

    let names = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let approve = backend
        .pending_signals(exec.id, &names(&["approve"]))
        .await
        .unwrap();
    assert_eq!(
        approve.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![s1, s3]
    );
    assert_eq!(approve[0].name, "approve");
    assert_eq!(approve[0].payload, b"one");
    let both = backend
        .pending_signals(exec.id, &names(&["reject", "approve"]))
        .await
        .unwrap();
    assert_eq!(
        both.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![s1, s2, s3]
    );
    // No names: every pending signal of the execution (not another's).
    let every = backend.pending_signals(exec.id, &[]).await.unwrap();
    assert_eq!(
        every.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![s1, s2, s3]
    );

    let mut t = turn(inv, c.epoch, at(4), hold(at(50_000)));
    t.events = vec![event(1, b"received one")];
    t.consumed_signals = vec![s1];
    commit(&backend, vec![t]).await;
    let approve = backend
        .pending_signals(exec.id, &names(&["approve"]))
        .await
        .unwrap();
    assert_eq!(approve.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s3]);

    let mut t = turn(inv, c.epoch, at(5), hold(at(50_000)));
    t.events = vec![event(2, b"received again")];
    t.consumed_signals = vec![s3, s1];
    assert_conflict(backend.commit(vec![t]).await, "signal consumed twice");
    assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    assert_eq!(
        backend
            .pending_signals(exec.id, &names(&["approve"]))
            .await
            .unwrap()
            .len(),
        1
    );
    // A signal of another execution cannot be consumed here.
    let mut t = turn(inv, c.epoch, at(5), hold(at(50_000)));
    t.consumed_signals = vec![so];
    assert_conflict(backend.commit(vec![t]).await, "foreign signal");
    assert_eq!(
        backend
            .pending_signals(other.id, &names(&["approve"]))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A signal wakes every waiting task of its execution and none of another's.
pub async fn signal_wakes_tasks_of_its_execution(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    let child = InvocationId::child_of(inv, Seq(1));
    let mut t = turn(inv, c.epoch, at(1), park(None));
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(1),
    )];
    commit(&backend, vec![t]).await;
    let cc = claim_one(&backend, request("w", at(1), &["app::child"])).await;
    commit(&backend, vec![turn(child, cc.epoch, at(2), park(None))]).await;

    let other = execution("app::f", at(0));
    create(&backend, &other).await;
    let co = claim_one(&backend, request("w", at(2), &["app::f"])).await;
    assert_eq!(co.invocation, other.root.invocation);
    commit(
        &backend,
        vec![turn(co.invocation, co.epoch, at(2), park(None))],
    )
    .await;

    assert_eq!(backend.queue_depth(None, at(3)).await.unwrap(), 0);
    backend
        .send_signal(exec.id, "go", vec![], at(3))
        .await
        .unwrap();
    assert_eq!(backend.queue_depth(None, at(3)).await.unwrap(), 2);
    let woken: HashSet<InvocationId> =
        claimed_ids(&backend, request("w", at(3), &["app::f", "app::child"]))
            .await
            .into_iter()
            .collect();
    assert_eq!(woken, HashSet::from([inv, child]));
}

// ---------------------------------------------------------------- outcomes

/// `Finish { execution: Some(..) }` records the execution's terminal status,
/// event and `completed_at`; the task is done.
pub async fn finish_with_outcome_updates_execution(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    let mut t = turn(
        inv,
        c.epoch,
        at(77),
        TaskDisposition::Finish {
            deliver: None,
            execution: Some(ExecutionOutcome {
                status: ExecutionStatus::Failed,
                terminal_event: b"failed: boom".to_vec(),
            }),
        },
    );
    t.events = vec![NewEvent {
        seq: Seq(1),
        kind: EventKind::Failed,
        call_key: None,
        bytes: b"failed: boom".to_vec(),
    }];
    commit(&backend, vec![t]).await;
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Failed);
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"failed: boom"[..]));
    assert_eq!(rec.completed_at, Some(at(77)));
    assert_eq!(rec.started_at, Some(at(0)));
    assert_eq!(rec.pause_report, None);
    let rows = backend.read_journal(inv, Seq(1)).await.unwrap();
    assert_eq!(rows[0].kind, "failed");

    // Done tasks are never claimed, counted or woken.
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::f"]))
            .await
            .is_empty()
    );
    assert!(matches!(
        backend.send_signal(exec.id, "late", vec![], at(80)).await,
        Err(StoreError::ExecutionEnded { .. })
    ));
    assert_eq!(backend.queue_depth(None, at(80)).await.unwrap(), 0);
    assert!(
        claim(&backend, request("w", at(81), &["app::f"]))
            .await
            .is_empty()
    );
}

/// `Pause` parks the task for good and stores the report on the execution.
pub async fn pause_stores_report(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let report = "seq 3: journal has call app::a, code asked for app::b \u{2014} ✗".to_string();
    commit(
        &backend,
        vec![turn(
            exec.root.invocation,
            c.epoch,
            at(9),
            TaskDisposition::Pause {
                report: report.clone(),
            },
        )],
    )
    .await;
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Paused);
    assert_eq!(rec.pause_report.as_deref(), Some(report.as_str()));
    assert_eq!(rec.completed_at, None);
    backend
        .send_signal(exec.id, "poke", vec![], at(10))
        .await
        .unwrap();
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::f"]))
            .await
            .is_empty()
    );
    assert!(matches!(
        backend
            .commit(vec![turn(exec.root.invocation, c.epoch, at(11), finish())])
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let paused = backend
        .list_executions(
            ExecutionFilter::default()
                .status(ExecutionStatus::Paused)
                .limit(10)
                .offset(0),
        )
        .await
        .unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].id, exec.id);
}

/// `resume_execution` turns a paused execution `running` again (report
/// cleared) and its paused task claimable; it refuses what is not paused.
pub async fn resume_makes_paused_tasks_runnable(backend: Arc<dyn Backend>) {
    let unknown = ExecutionId::new_random();
    assert!(matches!(
        backend.resume_execution(unknown, at(1)).await,
        Err(StoreError::NotFound(_))
    ));
    let (exec, c) = running(&backend, "app::f").await;
    assert!(!backend.resume_execution(exec.id, at(5)).await.unwrap());
    commit(
        &backend,
        vec![turn(
            exec.root.invocation,
            c.epoch,
            at(9),
            TaskDisposition::Pause {
                report: "diverged".into(),
            },
        )],
    )
    .await;
    assert!(
        claim(&backend, request("w", at(20), &["app::f"]))
            .await
            .is_empty()
    );
    assert!(backend.resume_execution(exec.id, at(20)).await.unwrap());
    let rec = backend.execution(exec.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Running);
    assert_eq!(rec.pause_report, None);
    let again = claim_one(&backend, request("w2", at(20), &["app::f"])).await;
    assert_eq!(again.invocation, exec.root.invocation);
    assert!(again.epoch > c.epoch);
    assert!(!backend.resume_execution(exec.id, at(21)).await.unwrap());
}

// ---------------------------------------------------------------- listing

/// Filters beyond the status combine (every one set must hold), keep the
/// newest-first order and page; a malformed id prefix is refused.
pub async fn list_executions_by_function_queue_tag_time_and_id(backend: Arc<dyn Backend>) {
    let specs = [
        ("app::a", "default", &["eu"][..], 10),
        ("app::a", "payments", &["eu", "vip"][..], 20),
        ("app::b", "payments", &[][..], 30),
        ("app::a", "default", &["us"][..], 40),
    ];
    let mut execs = Vec::new();
    for (function, queue, tags, created) in specs {
        let e = execution_with(function, routing(queue, 0, tags), at(created));
        create(&backend, &e).await;
        execs.push(e);
    }
    let ids = |filter: ExecutionFilter| {
        let backend = backend.clone();
        async move {
            backend
                .list_executions(filter.limit(100))
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let f = |function: &str| ExecutionFilter::default().function(function.to_string());
    assert_eq!(
        ids(f("app::a")).await,
        vec![execs[3].id, execs[1].id, execs[0].id]
    );
    assert!(ids(f("app::none")).await.is_empty());
    let q = ExecutionFilter::default().queue("payments".to_string());
    assert_eq!(ids(q.clone()).await, vec![execs[2].id, execs[1].id]);
    let tag = ExecutionFilter::default().tag("eu".to_string());
    assert_eq!(ids(tag).await, vec![execs[1].id, execs[0].id]);
    // Combined, with the status and a time range.
    let both = ExecutionFilter::default()
        .function("app::a".to_string())
        .queue("payments".to_string())
        .status(ExecutionStatus::Pending);
    assert_eq!(ids(both).await, vec![execs[1].id]);
    let window = ExecutionFilter::default()
        .created_after(at(20))
        .created_before(at(40));
    assert_eq!(ids(window).await, vec![execs[2].id, execs[1].id]);
    // Paging a filtered listing.
    let second = backend
        .list_executions(
            ExecutionFilter::default()
                .function("app::a".to_string())
                .limit(1)
                .offset(1),
        )
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![execs[1].id]
    );
    // An id prefix, with or without hyphens, in either case.
    let full = execs[2].id.to_string();
    for prefix in [
        &full[..8],
        &full[..13],
        &full.to_uppercase()[..6],
        full.as_str(),
    ] {
        let found = ids(ExecutionFilter::default().id_prefix(prefix.to_string())).await;
        assert!(found.contains(&execs[2].id), "{prefix}: {found:?}");
        assert!(found.len() <= 4);
    }
    let exact = ids(ExecutionFilter::default().id_prefix(full.clone())).await;
    assert_eq!(exact, vec![execs[2].id]);
    let bad = backend
        .list_executions(
            ExecutionFilter::default()
                .id_prefix("xyz".to_string())
                .limit(10),
        )
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidRequest(_))), "{bad:?}");
}

/// `list_executions` pages newest first (ties by id) and filters by status.
pub async fn list_executions_pages_and_filters(backend: Arc<dyn Backend>) {
    let mut execs = Vec::new();
    for created in [10, 30, 20, 30, 5] {
        let e = execution("app::f", at(created));
        create(&backend, &e).await;
        execs.push(e);
    }
    let (tie_lo, tie_hi) = if execs[1].id < execs[3].id {
        (execs[1].id, execs[3].id)
    } else {
        (execs[3].id, execs[1].id)
    };
    let expected = vec![tie_lo, tie_hi, execs[2].id, execs[0].id, execs[4].id];
    let page = |status, limit, offset| {
        ExecutionFilter::default()
            .status(status)
            .limit(limit)
            .offset(offset)
    };
    let all = backend.list_executions(page(None, 100, 0)).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    let mut paged = Vec::new();
    for offset in [0, 2, 4, 6] {
        let rows = backend
            .list_executions(page(None, 2, offset))
            .await
            .unwrap();
        assert!(rows.len() <= 2);
        paged.extend(rows.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, expected);
    assert!(
        backend
            .list_executions(page(None, 0, 0))
            .await
            .unwrap()
            .is_empty()
    );

    // Claim the oldest; it is the only running one.
    let mut req = request("w", at(100), &["app::f"]);
    req.limit = 1;
    req.queues = None;
    let c = claim_one(&backend, req).await;
    let running_id = ExecutionId::from_uuid(*c.invocation.as_uuid());
    let running = backend
        .list_executions(page(Some(ExecutionStatus::Running), 10, 0))
        .await
        .unwrap();
    assert_eq!(
        running.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![running_id]
    );
    let pending = backend
        .list_executions(page(Some(ExecutionStatus::Pending), 10, 0))
        .await
        .unwrap();
    assert_eq!(pending.len(), 4);
    assert!(pending.iter().all(|r| r.status == ExecutionStatus::Pending));
    assert!(
        backend
            .list_executions(page(Some(ExecutionStatus::Completed), 10, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

/// `queue_depth` counts tasks in state ready (whatever their `run_at`), in
/// one queue or in all.
pub async fn queue_depth_counts_ready_tasks(backend: Arc<dyn Backend>) {
    assert_eq!(backend.queue_depth(None, at(0)).await.unwrap(), 0);
    for (queue, run_at) in [("a", 0), ("a", 0), ("b", 0), ("b", 9_000)] {
        let mut e = execution_with("app::f", routing(queue, 0, &[]), at(0));
        e.root.run_at = at(run_at);
        create(&backend, &e).await;
    }
    assert_eq!(backend.queue_depth(None, at(0)).await.unwrap(), 4);
    assert_eq!(backend.queue_depth(Some("a"), at(0)).await.unwrap(), 2);
    assert_eq!(backend.queue_depth(Some("b"), at(0)).await.unwrap(), 2);
    assert_eq!(backend.queue_depth(Some("zzz"), at(0)).await.unwrap(), 0);
    let mut req = request("w", at(1), &["app::f"]);
    req.queues = Some(vec!["a".into()]);
    req.limit = 1;
    claim_one(&backend, req).await;
    assert_eq!(backend.queue_depth(Some("a"), at(1)).await.unwrap(), 1);
    assert_eq!(backend.queue_depth(None, at(1)).await.unwrap(), 3);
}

/// Payload bytes (any bytes, empty or large) come back exactly as written.
pub async fn payload_bytes_round_trip(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let odd = vec![0u8, 0xff, 0, b'\'', b'"', 0x80];
    let mut t = turn(inv, c.epoch, at(1), hold(at(50_000)));
    t.events = vec![event(1, &big), event(2, &[]), event(3, &odd)];
    t.events[0].call_key = Some(stent_journal::CallKey([7; 32]));
    commit(&backend, vec![t]).await;
    let rows = backend.read_journal(inv, Seq(1)).await.unwrap();
    assert_eq!(rows[0].bytes, big);
    assert_eq!(rows[1].bytes, Vec::<u8>::new());
    assert_eq!(rows[2].bytes, odd);
    let sid = backend
        .send_signal(exec.id, "blob", big.clone(), at(2))
        .await
        .unwrap();
    let pending = backend
        .pending_signals(exec.id, &["blob".to_string()])
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, sid);
    assert_eq!(pending[0].payload, big);
}

// ---------------------------------------------------------------- helpers (2)

/// `result` is a lost lease, of `expected` (invocation, epoch).
fn assert_lost_lease<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    expected: (InvocationId, LeaseEpoch),
) {
    match result {
        Err(StoreError::LeaseLost { invocation, epoch }) => {
            assert_eq!((invocation, epoch), expected);
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
}

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

fn retry(run_at: Timestamp) -> TaskDisposition {
    TaskDisposition::Retry {
        run_at,
        error: "attempt failed: boom".to_string(),
    }
}

fn dead_letter(reason: &str) -> TaskDisposition {
    TaskDisposition::DeadLetter {
        reason: reason.to_string(),
    }
}

fn deliver_to(parent: InvocationId, event: &[u8]) -> TaskDisposition {
    TaskDisposition::Finish {
        deliver: Some(Delivery {
            parent,
            event: event.to_vec(),
        }),
        execution: None,
    }
}

fn outcome(status: ExecutionStatus, event: &[u8]) -> TaskDisposition {
    TaskDisposition::Finish {
        deliver: None,
        execution: Some(ExecutionOutcome {
            status,
            terminal_event: event.to_vec(),
        }),
    }
}

async fn record(backend: &Arc<dyn Backend>, id: ExecutionId) -> ExecutionRecord {
    backend
        .execution(id)
        .await
        .expect("execution")
        .expect("execution exists")
}

fn ids(claimed: &[ClaimedTask]) -> Vec<InvocationId> {
    claimed.iter().map(|c| c.invocation).collect()
}

// ---------------------------------------------------------------- attempts

/// A worker that is alive and finds its lapsed lease taken over reports it
/// (`forgive_takeover`): the takeover is taken off `attempts`, once. A
/// report for another epoch, one after the task committed, or one for a
/// lease the holder released (the next claim took a ready task) changes
/// nothing.
pub async fn forgiven_takeovers_leave_the_attempts(backend: Arc<dyn Backend>) {
    let exec = execution("app::f", at(0));
    create(&backend, &exec).await;
    let inv = exec.root.invocation;
    let short = |name: &str, now: i64| {
        let mut req = request(name, at(now), &["app::f"]);
        req.lease_until = at(now + 100);
        req
    };
    let attempts = |backend: Arc<dyn Backend>| async move {
        backend
            .task(inv)
            .await
            .expect("read task")
            .expect("task exists")
            .attempts
    };
    let c1 = claim_one(&backend, short("w1", 0)).await;
    let c2 = claim_one(&backend, short("w2", 101)).await;
    assert_eq!(c2.attempts, 2);
    // The wrong epoch, then the right one twice: one takeover forgiven.
    backend
        .forgive_takeover(inv, c2.epoch)
        .await
        .expect("forgive");
    assert_eq!(attempts(backend.clone()).await, 2);
    backend
        .forgive_takeover(inv, c1.epoch)
        .await
        .expect("forgive");
    assert_eq!(attempts(backend.clone()).await, 1);
    backend
        .forgive_takeover(inv, c1.epoch)
        .await
        .expect("forgive");
    assert_eq!(attempts(backend.clone()).await, 1);
    let c3 = claim_one(&backend, short("w3", 202)).await;
    assert_eq!(c3.attempts, 2, "counts on from the forgiven count");

    // Taken over, then the new holder commits: nothing left to forgive.
    commit(&backend, vec![turn(inv, c3.epoch, at(210), hold(at(250)))]).await;
    let c4 = claim_one(&backend, short("w4", 251)).await;
    commit(&backend, vec![turn(inv, c4.epoch, at(260), hold(at(300)))]).await;
    backend
        .forgive_takeover(inv, c3.epoch)
        .await
        .expect("forgive");
    assert_eq!(attempts(backend.clone()).await, 0);

    // Released by its holder, then claimed ready: not a takeover.
    commit(
        &backend,
        vec![turn(inv, c4.epoch, at(270), park(Some(at(280))))],
    )
    .await;
    let c5 = claim_one(&backend, short("w5", 280)).await;
    assert_eq!(c5.attempts, 1);
    backend
        .forgive_takeover(inv, c4.epoch)
        .await
        .expect("forgive");
    assert_eq!(attempts(backend.clone()).await, 1);
}

/// `attempts` counts the claims since the lease holder last got a turn
/// through: claims whose holders never commit (crashes, expired leases) add
/// up, a refused stale write changes nothing, and any successful commit
/// (whatever its disposition) starts the count over. A task spawned with a
/// lease starts at 1.
pub async fn attempts_reset_on_commit_and_count_reclaims(backend: Arc<dyn Backend>) {
    let exec = execution("app::f", at(0));
    create(&backend, &exec).await;
    let inv = exec.root.invocation;
    let short = |name: &str, now: i64| {
        let mut req = request(name, at(now), &["app::f"]);
        req.lease_until = at(now + 100);
        req
    };
    let c1 = claim_one(&backend, short("w1", 0)).await;
    assert_eq!(c1.attempts, 1);
    let c2 = claim_one(&backend, short("w2", 101)).await;
    assert_eq!((c2.epoch, c2.attempts), (LeaseEpoch(2), 2));
    assert_lease_lost(
        backend
            .commit(vec![turn(inv, c1.epoch, at(150), hold(at(10_000)))])
            .await,
        "stale hold",
    );
    let c3 = claim_one(&backend, short("w3", 202)).await;
    assert_eq!((c3.epoch, c3.attempts), (LeaseEpoch(3), 3));

    // The holder gets a turn through: the count starts over.
    commit(&backend, vec![turn(inv, c3.epoch, at(210), hold(at(250)))]).await;
    let c4 = claim_one(&backend, short("w4", 251)).await;
    assert_eq!((c4.epoch, c4.attempts), (LeaseEpoch(4), 1));
    let c5 = claim_one(&backend, short("w5", 352)).await;
    assert_eq!((c5.epoch, c5.attempts), (LeaseEpoch(5), 2));
    commit(
        &backend,
        vec![turn(inv, c5.epoch, at(360), park(Some(at(400))))],
    )
    .await;
    let c6 = claim_one(&backend, short("w6", 400)).await;
    assert_eq!((c6.epoch, c6.attempts), (LeaseEpoch(6), 1));
    commit(&backend, vec![turn(inv, c6.epoch, at(401), retry(at(402)))]).await;
    let c7 = claim_one(&backend, short("w7", 402)).await;
    assert_eq!((c7.epoch, c7.attempts, c7.retries), (LeaseEpoch(7), 1, 1));

    // A child spawned with a lease is at attempt 1; left to expire, its
    // next claim is attempt 2.
    let child = InvocationId::child_of(inv, Seq(1));
    let mut t = turn(inv, c7.epoch, at(410), hold(at(100_000)));
    let mut leased = invocation(child, exec.id, "app::child", Routing::default(), at(410));
    leased.lease = Some(LeaseGrant {
        worker: worker("w7"),
        until: at(450),
    });
    t.spawn = vec![leased];
    commit(&backend, vec![t]).await;
    let cc = claim_one(&backend, request("w8", at(451), &["app::child"])).await;
    assert_eq!(
        (cc.invocation, cc.epoch, cc.attempts),
        (child, LeaseEpoch(2), 2)
    );
}

// ---------------------------------------------------------------- concurrency limits

/// A function limited to 2 never has more than 2 unexpired leases, whatever
/// the claimers and batches; its skipped tasks do not block other functions
/// from filling a batch; a finished task or an expired lease frees a slot.
pub async fn concurrency_limits_cap_live_leases(backend: Arc<dyn Backend>) {
    let mut limited = Vec::new();
    for i in 0..6 {
        let e = execution("app::limited", at(i));
        create(&backend, &e).await;
        limited.push(e.root.invocation);
    }
    let mut free = Vec::new();
    for i in 0..3 {
        let e = execution_with("app::free", routing("default", -1, &[]), at(i));
        create(&backend, &e).await;
        free.push(e.root.invocation);
    }
    let req = |w: &str, now: i64, limit: usize| {
        let mut r = request(w, at(now), &["app::limited", "app::free"]);
        r.limit = limit;
        // Leases taken before 1_000 run out then.
        r.lease_until = if now < 1_000 { at(1_000) } else { at(100_000) };
        r.concurrency_limits = vec![
            ("app::limited".to_string(), 2),
            ("app::unrelated".to_string(), 0),
        ];
        r
    };
    // Claim order puts every limited task first; only two are taken and
    // the batch is filled with the unlimited ones.
    let got = claim(&backend, req("w1", 10, 4)).await;
    assert_eq!(ids(&got), vec![limited[0], limited[1], free[0], free[1]]);
    // Both slots are held: other claimers and batches get no limited task.
    assert_eq!(
        claimed_ids(&backend, req("w2", 20, 10)).await,
        vec![free[2]]
    );
    assert!(claim(&backend, req("w3", 30, 10)).await.is_empty());

    // Finishing one frees one slot.
    let c0 = got[0].clone();
    commit(
        &backend,
        vec![turn(c0.invocation, c0.epoch, at(40), finish())],
    )
    .await;
    assert_eq!(
        claimed_ids(&backend, req("w3", 41, 10)).await,
        vec![limited[2]]
    );
    assert!(claim(&backend, req("w4", 42, 10)).await.is_empty());

    // limited[2] is renewed; limited[1]'s lease runs out at 1_000 and stops
    // counting: one slot, taken by the claim-order first candidate (the
    // expired task itself).
    let lost = backend
        .renew_leases(
            &worker("w3"),
            &[(limited[2], LeaseEpoch(1))],
            at(0),
            at(5_000),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    let mut only_limited = req("w5", 1_001, 10);
    only_limited.functions = vec!["app::limited".into()];
    let got = claim(&backend, only_limited.clone()).await;
    assert_eq!(ids(&got), vec![limited[1]]);
    assert_eq!(got[0].epoch, LeaseEpoch(2));
    only_limited.worker = worker("w6");
    assert!(claim(&backend, only_limited.clone()).await.is_empty());
    // Parking the renewed one frees its slot for a task never claimed.
    commit(
        &backend,
        vec![turn(limited[2], LeaseEpoch(1), at(1_002), park(None))],
    )
    .await;
    assert_eq!(
        claimed_ids(&backend, only_limited.clone()).await,
        vec![limited[3]]
    );
    // Without limits in the request nothing caps the claim.
    only_limited.concurrency_limits = Vec::new();
    assert_eq!(
        claimed_ids(&backend, only_limited).await,
        vec![limited[4], limited[5]]
    );

    // Several concurrent claimers, one task per batch, over ten tasks of a
    // function limited to 2: exactly two are leased.
    for i in 0..10 {
        create(&backend, &execution("app::burst", at(i))).await;
    }
    let mut handles = Vec::new();
    for w in 0..4 {
        let backend = backend.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..5 {
                let mut r = request(&format!("b{w}"), at(2_000), &["app::burst"]);
                r.limit = 1;
                r.lease_until = at(9_000);
                r.concurrency_limits = vec![("app::burst".to_string(), 2)];
                mine.extend(backend.claim(r).await.expect("claim"));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("claimer").len();
    }
    assert_eq!(total, 2);
}

// ---------------------------------------------------------------- code versions

/// A worker with a code version claims only executions of that version, of
/// the versions it also runs, and those not pinned yet (which the claim
/// pins to its version); one without a version claims every execution and
/// pins none. Limited functions follow the same rule. `stats` counts the
/// unfinished executions per version.
pub async fn claims_take_only_the_code_versions_a_worker_runs(backend: Arc<dyn Backend>) {
    let create = |function: &str, version: Option<&str>| {
        let mut e = execution(function, at(1));
        e.code_version = version.map(str::to_string);
        e
    };
    let versioned = |name: &str, now: Timestamp, functions: &[&str], own: &str, also: &[&str]| {
        let mut r = request(name, now, functions);
        r.code_version = Some(own.to_string());
        r.also_runs = also.iter().map(|a| a.to_string()).collect();
        r
    };
    let v1 = create("app::f", Some("v1"));
    let v2 = create("app::f", Some("v2"));
    let unpinned = create("app::f", None);
    let old = create("app::f", Some("v0"));
    for e in [&v1, &v2, &unpinned, &old] {
        backend.create_execution(e.clone()).await.unwrap();
    }
    let record = backend.execution(v1.id).await.unwrap().unwrap();
    assert_eq!(record.code_version.as_deref(), Some("v1"));

    let stats = backend.stats(at(2)).await.unwrap();
    assert_eq!(
        stats.versions,
        vec![
            (None, 1),
            (Some("v0".to_string()), 1),
            (Some("v1".to_string()), 1),
            (Some("v2".to_string()), 1),
        ]
    );

    // v2 takes its own and the one not pinned yet, and pins that one.
    let mut got = claimed_ids(&backend, versioned("w2", at(2), &["app::f"], "v2", &[])).await;
    got.sort();
    let mut want = vec![v2.root.invocation, unpinned.root.invocation];
    want.sort();
    assert_eq!(got, want);
    let pinned = backend.execution(unpinned.id).await.unwrap().unwrap();
    assert_eq!(pinned.code_version.as_deref(), Some("v2"));
    // v3, which also runs v0, takes v0 and leaves it pinned to v0.
    let got = claimed_ids(&backend, versioned("w3", at(3), &["app::f"], "v3", &["v0"])).await;
    assert_eq!(got, vec![old.root.invocation]);
    let kept = backend.execution(old.id).await.unwrap().unwrap();
    assert_eq!(kept.code_version.as_deref(), Some("v0"));
    // Nothing else of v2 or v3 is left; v1's stays for a v1 worker.
    assert!(
        claimed_ids(&backend, versioned("w2", at(4), &["app::f"], "v2", &["v3"]))
            .await
            .is_empty()
    );
    let got = claimed_ids(&backend, versioned("w1", at(4), &["app::f"], "v1", &[])).await;
    assert_eq!(got, vec![v1.root.invocation]);

    // A worker without a version claims any version and pins nothing.
    let later_v1 = create("app::f", Some("v1"));
    let later_free = create("app::f", None);
    backend.create_execution(later_v1.clone()).await.unwrap();
    backend.create_execution(later_free.clone()).await.unwrap();
    let mut got = claimed_ids(&backend, request("any", at(5), &["app::f"])).await;
    got.sort();
    let mut want = vec![later_v1.root.invocation, later_free.root.invocation];
    want.sort();
    assert_eq!(got, want);
    let free = backend.execution(later_free.id).await.unwrap().unwrap();
    assert_eq!(free.code_version, None);

    // Functions with a concurrency limit are claimed by the same rule.
    let limited_v1 = create("app::limited", Some("v1"));
    backend.create_execution(limited_v1.clone()).await.unwrap();
    let mut req = versioned("w2", at(6), &["app::limited"], "v2", &[]);
    req.concurrency_limits = vec![("app::limited".to_string(), 5)];
    assert!(claimed_ids(&backend, req).await.is_empty());
    let mut req = versioned("w1", at(6), &["app::limited"], "v1", &[]);
    req.concurrency_limits = vec![("app::limited".to_string(), 5)];
    assert_eq!(
        claimed_ids(&backend, req).await,
        vec![limited_v1.root.invocation]
    );
    let limited_free = create("app::limited", None);
    backend
        .create_execution(limited_free.clone())
        .await
        .unwrap();
    let mut req = versioned("w2", at(7), &["app::limited"], "v2", &[]);
    req.concurrency_limits = vec![("app::limited".to_string(), 5)];
    assert_eq!(
        claimed_ids(&backend, req).await,
        vec![limited_free.root.invocation]
    );
    let pinned = backend.execution(limited_free.id).await.unwrap().unwrap();
    assert_eq!(pinned.code_version.as_deref(), Some("v2"));
}

// ---------------------------------------------------------------- retries

/// Each retried attempt's failure is kept, numbered, with its time; a
/// stale commit records none; only the last [`ATTEMPT_FAILURES_KEPT`] are
/// kept; a cleanup removes them with their task.
pub async fn failed_attempts_are_kept_each_with_its_time(backend: Arc<dyn Backend>) {
    let failed = |run_at: Timestamp, error: &str| TaskDisposition::Retry {
        run_at,
        error: error.to_string(),
    };
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    assert!(backend.task_failures(inv).await.unwrap().is_empty());
    commit(
        &backend,
        vec![turn(inv, c.epoch, at(10), failed(at(100), "e1"))],
    )
    .await;
    // A stale commit of the same lease is refused and records nothing.
    assert_lease_lost(
        backend
            .commit(vec![turn(inv, c.epoch, at(11), failed(at(100), "stale"))])
            .await,
        "stale retry",
    );
    let c2 = claim_one(&backend, request("w", at(100), &["app::f"])).await;
    commit(
        &backend,
        vec![turn(inv, c2.epoch, at(110), failed(at(200), "e2"))],
    )
    .await;
    let failures = backend.task_failures(inv).await.unwrap();
    assert_eq!(
        failures,
        vec![
            AttemptFailure {
                attempt: 1,
                at: at(10),
                error: "e1".into()
            },
            AttemptFailure {
                attempt: 2,
                at: at(110),
                error: "e2".into()
            },
        ]
    );
    // A step retried without end keeps only its last attempts.
    let mut now = 200;
    for _ in 0..ATTEMPT_FAILURES_KEPT {
        let c = claim_one(&backend, request("w", at(now), &["app::f"])).await;
        commit(
            &backend,
            vec![turn(
                inv,
                c.epoch,
                at(now + 1),
                failed(at(now + 10), "again"),
            )],
        )
        .await;
        now += 10;
    }
    let failures = backend.task_failures(inv).await.unwrap();
    assert_eq!(failures.len(), ATTEMPT_FAILURES_KEPT as usize);
    assert_eq!(failures[0].attempt, 3);
    assert_eq!(
        failures.last().map(|f| f.attempt),
        Some(ATTEMPT_FAILURES_KEPT + 2)
    );
    // Unknown tasks have none.
    let other = ExecutionId::new_random().root_invocation();
    assert!(backend.task_failures(other).await.unwrap().is_empty());
    // They go with their task.
    let c = claim_one(&backend, request("w", at(now), &["app::f"])).await;
    commit(
        &backend,
        vec![turn(
            inv,
            c.epoch,
            at(now + 1),
            outcome(ExecutionStatus::Completed, b"ok"),
        )],
    )
    .await;
    let counts = backend.cleanup(at(now + 2), false).await.unwrap();
    assert_eq!(counts.executions, 1);
    assert!(backend.task_failures(inv).await.unwrap().is_empty());
}

/// `Retry` releases the lease and makes the task claimable at `run_at` (not
/// before), counting a retry: in the claimed task, and summed over the
/// execution's tasks in its record.
pub async fn retry_reschedules_and_counts(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::f").await;
    let inv = exec.root.invocation;
    let mut t = turn(inv, c.epoch, at(10), retry(at(5_000)));
    t.events = vec![event(1, b"attempt 1 failed")];
    commit(&backend, vec![t]).await;
    assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    // The failure is kept on the task for operators, with its time.
    let task = backend.task(inv).await.unwrap().expect("task");
    assert_eq!(
        task.last_failure,
        Some((at(10), "attempt failed: boom".to_string()))
    );
    let lost = backend
        .renew_leases(&worker("w1"), &[(inv, c.epoch)], at(0), at(99_999))
        .await
        .unwrap();
    assert_eq!(lost, vec![inv]);
    assert_lease_lost(
        backend
            .commit(vec![turn(inv, c.epoch, at(11), finish())])
            .await,
        "commit after retry",
    );
    assert_eq!(backend.queue_depth(None, at(10)).await.unwrap(), 1);
    assert!(
        claim(&backend, request("w", at(4_999), &["app::f"]))
            .await
            .is_empty()
    );
    let c2 = claim_one(&backend, request("w", at(5_000), &["app::f"])).await;
    assert_eq!((c2.epoch, c2.attempts, c2.retries), (LeaseEpoch(2), 1, 1));
    assert_eq!(record(&backend, exec.id).await.retries, 1);

    commit(
        &backend,
        vec![turn(inv, c2.epoch, at(5_010), retry(at(6_000)))],
    )
    .await;
    let c3 = claim_one(&backend, request("w", at(6_000), &["app::f"])).await;
    assert_eq!(c3.retries, 2);
    let task = backend.task(inv).await.unwrap().expect("task");
    assert_eq!(task.last_failure.map(|(t, _)| t), Some(at(5_010)));

    // A child's retries are its own, and add to the execution's.
    let child = InvocationId::child_of(inv, Seq(2));
    let mut t = turn(inv, c3.epoch, at(6_001), park(None));
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(6_001),
    )];
    commit(&backend, vec![t]).await;
    let cc = claim_one(&backend, request("w", at(6_002), &["app::child"])).await;
    assert_eq!(cc.retries, 0);
    commit(
        &backend,
        vec![turn(child, cc.epoch, at(6_003), retry(at(6_004)))],
    )
    .await;
    let cc2 = claim_one(&backend, request("w", at(6_004), &["app::child"])).await;
    assert_eq!((cc2.retries, cc2.attempts), (1, 1));
    let rec = record(&backend, exec.id).await;
    assert_eq!(rec.retries, 3);
    assert_eq!(rec.status, ExecutionStatus::Running);
    let listed = backend
        .list_executions(ExecutionFilter::default().limit(10).offset(0))
        .await
        .unwrap();
    assert_eq!(listed[0].retries, 3);
}

// ---------------------------------------------------------------- dead letters

/// `DeadLetter` suspends the task (never claimed, counted or woken) and
/// records a dead letter, listed newest first; replaying it makes the task
/// claimable again at once, with its retries kept or reset and optionally in
/// another queue. The execution's status is left alone.
pub async fn dead_letter_list_get_and_replay(backend: Arc<dyn Backend>) {
    let (a, ca) = running(&backend, "app::a").await;
    let ainv = a.root.invocation;
    commit(&backend, vec![turn(ainv, ca.epoch, at(1), retry(at(2)))]).await;
    let ca2 = claim_one(&backend, request("w1", at(2), &["app::a"])).await;
    let mut t = turn(ainv, ca2.epoch, at(100), dead_letter("boom"));
    t.events = vec![event(1, b"failed for good")];
    commit(&backend, vec![t]).await;

    let b = execution_with("app::b", routing("q1", 0, &[]), at(0));
    create(&backend, &b).await;
    let binv = b.root.invocation;
    let cb = claim_one(&backend, request("w1", at(3), &["app::b"])).await;
    commit(&backend, vec![turn(binv, cb.epoch, at(4), retry(at(5)))]).await;
    let cb = claim_one(&backend, request("w1", at(5), &["app::b"])).await;
    commit(&backend, vec![turn(binv, cb.epoch, at(6), retry(at(7)))]).await;
    let cb = claim_one(&backend, request("w1", at(7), &["app::b"])).await;
    commit(
        &backend,
        vec![turn(binv, cb.epoch, at(200), dead_letter("bad input"))],
    )
    .await;

    let expected_a = DeadLetterRecord {
        task: ainv,
        execution: a.id,
        function: "app::a".into(),
        queue: "default".into(),
        reason: "boom".into(),
        retries: 1,
        failed_at: at(100),
    };
    let listed = backend.list_dead_letters(10).await.unwrap();
    assert_eq!(ids_of(&listed), vec![binv, ainv]);
    assert_eq!(listed[1], expected_a);
    assert_eq!(listed[0].queue, "q1");
    assert_eq!(listed[0].reason, "bad input");
    assert_eq!(listed[0].retries, 2);
    assert_eq!(
        ids_of(&backend.list_dead_letters(1).await.unwrap()),
        vec![binv]
    );
    assert!(backend.list_dead_letters(0).await.unwrap().is_empty());
    assert_eq!(
        backend.get_dead_letter(ainv).await.unwrap(),
        Some(expected_a)
    );
    let ghost = InvocationId::child_of(ainv, Seq(9));
    assert_eq!(backend.get_dead_letter(ghost).await.unwrap(), None);

    // Dead tasks are never claimed, counted or woken, and the lease is gone.
    let everything = request("w", at(1_000_000_000), &["app::a", "app::b"]);
    assert!(claim(&backend, everything.clone()).await.is_empty());
    assert_eq!(backend.queue_depth(None, at(300)).await.unwrap(), 0);
    backend
        .send_signal(a.id, "poke", vec![], at(300))
        .await
        .unwrap();
    assert!(claim(&backend, everything.clone()).await.is_empty());
    assert_lease_lost(
        backend
            .commit(vec![turn(ainv, ca2.epoch, at(301), finish())])
            .await,
        "commit after dead letter",
    );
    assert_eq!(
        backend
            .renew_leases(&worker("w1"), &[(ainv, ca2.epoch)], at(0), at(999_999))
            .await
            .unwrap(),
        vec![ainv]
    );
    assert_eq!(
        record(&backend, a.id).await.status,
        ExecutionStatus::Running
    );

    // Replay a into q2, keeping its retries.
    assert!(
        backend
            .replay_dead_letter(ainv, Some("q2"), false, at(400))
            .await
            .unwrap()
    );
    assert_eq!(backend.get_dead_letter(ainv).await.unwrap(), None);
    assert_eq!(
        ids_of(&backend.list_dead_letters(10).await.unwrap()),
        vec![binv]
    );
    assert!(
        !backend
            .replay_dead_letter(ainv, None, true, at(401))
            .await
            .unwrap()
    );
    assert!(
        !backend
            .replay_dead_letter(ghost, None, true, at(401))
            .await
            .unwrap()
    );
    assert_eq!(backend.queue_depth(Some("q2"), at(400)).await.unwrap(), 1);
    let mut in_default = request("w", at(400), &["app::a"]);
    in_default.queues = Some(vec!["default".into()]);
    assert!(claim(&backend, in_default).await.is_empty());
    let mut in_q2 = request("w", at(400), &["app::a"]);
    in_q2.queues = Some(vec!["q2".into()]);
    let again = claim_one(&backend, in_q2).await;
    assert_eq!(again.invocation, ainv);
    assert_eq!(
        (again.epoch, again.attempts, again.retries),
        (LeaseEpoch(3), 1, 1)
    );
    let rec = record(&backend, a.id).await;
    assert_eq!(rec.routing.queue, "q2");
    assert_eq!(rec.retries, 1);
    // The replayed task writes with its new lease.
    let mut t = turn(ainv, again.epoch, at(401), hold(at(90_000)));
    t.events = vec![event(2, b"second life")];
    commit(&backend, vec![t]).await;

    // Replay b with its retries reset; its queue stays.
    assert_eq!(record(&backend, b.id).await.retries, 2);
    assert!(
        backend
            .replay_dead_letter(binv, None, true, at(500))
            .await
            .unwrap()
    );
    assert!(
        claim(&backend, request("w", at(499), &["app::b"]))
            .await
            .is_empty()
    );
    let mut in_q1 = request("w", at(500), &["app::b"]);
    in_q1.queues = Some(vec!["q1".into()]);
    let again = claim_one(&backend, in_q1).await;
    assert_eq!(
        (again.invocation, again.retries, again.attempts),
        (binv, 0, 1)
    );
    assert_eq!(record(&backend, b.id).await.retries, 0);
    assert!(backend.list_dead_letters(10).await.unwrap().is_empty());
}

fn ids_of(letters: &[DeadLetterRecord]) -> Vec<InvocationId> {
    letters.iter().map(|d| d.task).collect()
}

/// Discarding a dead letter ends its task as `Finish` would: the delivery
/// reaches the parent's inbox and wakes it, or the execution's outcome is
/// recorded.
pub async fn dead_letter_discard_finishes_the_task(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let parent = exec.root.invocation;
    let child = InvocationId::child_of(parent, Seq(1));
    let mut t = turn(parent, c.epoch, at(1), park(None));
    t.events = vec![event(1, b"scheduled")];
    t.spawn = vec![invocation(
        child,
        exec.id,
        "app::child",
        Routing::default(),
        at(1),
    )];
    commit(&backend, vec![t]).await;
    let cc = claim_one(&backend, request("w2", at(2), &["app::child"])).await;
    commit(
        &backend,
        vec![turn(child, cc.epoch, at(10), dead_letter("gave up"))],
    )
    .await;
    assert!(
        claim(&backend, request("w", at(10), &["app::parent"]))
            .await
            .is_empty()
    );

    assert!(
        backend
            .discard_dead_letter(
                child,
                Some(Delivery {
                    parent,
                    event: b"call failed: gave up".to_vec(),
                }),
                None,
                at(20),
            )
            .await
            .unwrap()
    );
    let inbox = backend.inbox(parent).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].event, b"call failed: gave up");
    assert_eq!(backend.get_dead_letter(child).await.unwrap(), None);
    let cp = claim_one(&backend, request("w", at(20), &["app::parent"])).await;
    assert_eq!(cp.invocation, parent);
    // The child is done for good.
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::child"]))
            .await
            .is_empty()
    );
    assert!(
        !backend
            .discard_dead_letter(child, None, None, at(21))
            .await
            .unwrap()
    );
    assert!(
        !backend
            .replay_dead_letter(child, None, false, at(21))
            .await
            .unwrap()
    );
    assert_eq!(
        record(&backend, exec.id).await.status,
        ExecutionStatus::Running
    );

    // A dead-lettered root, discarded with the execution's outcome.
    let (root_exec, rc) = running(&backend, "app::root").await;
    let root = root_exec.root.invocation;
    commit(
        &backend,
        vec![turn(root, rc.epoch, at(30), dead_letter("boom"))],
    )
    .await;
    assert!(
        backend
            .discard_dead_letter(
                root,
                None,
                Some(ExecutionOutcome {
                    status: ExecutionStatus::Failed,
                    terminal_event: b"failed: boom".to_vec(),
                }),
                at(40),
            )
            .await
            .unwrap()
    );
    let rec = record(&backend, root_exec.id).await;
    assert_eq!(rec.status, ExecutionStatus::Failed);
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"failed: boom"[..]));
    assert_eq!(rec.completed_at, Some(at(40)));
    assert!(
        claim(&backend, request("w", at(1_000_000_000), &["app::root"]))
            .await
            .is_empty()
    );
    assert!(backend.list_dead_letters(10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------- cache

/// `cache_put` stores results by call key; the first writer wins; a refused
/// commit stores nothing.
pub async fn cache_put_and_get_first_writer_wins(backend: Arc<dyn Backend>) {
    let k1 = CallKey([1; 32]);
    let k2 = CallKey([2; 32]);
    let k3 = CallKey([3; 32]);
    assert_eq!(backend.cache_get(k1).await.unwrap(), None);
    let (a, ca) = running(&backend, "app::a").await;
    let ainv = a.root.invocation;
    let mut t = turn(ainv, ca.epoch, at(1), hold(at(90_000)));
    t.cache_put = vec![(k1, b"first".to_vec())];
    commit(&backend, vec![t]).await;
    assert_eq!(
        backend.cache_get(k1).await.unwrap(),
        Some(b"first".to_vec())
    );

    let (b, cb) = running(&backend, "app::b").await;
    let binv = b.root.invocation;
    let mut t = turn(binv, cb.epoch, at(2), hold(at(90_000)));
    t.cache_put = vec![(k1, b"second".to_vec()), (k2, Vec::new())];
    commit(&backend, vec![t]).await;
    assert_eq!(
        backend.cache_get(k1).await.unwrap(),
        Some(b"first".to_vec())
    );
    assert_eq!(backend.cache_get(k2).await.unwrap(), Some(Vec::new()));

    // Refused turns store nothing: a stale epoch, or a conflict later in
    // the same batch.
    let mut t = turn(binv, LeaseEpoch(cb.epoch.0 + 1), at(3), hold(at(90_000)));
    t.cache_put = vec![(k3, b"stale".to_vec())];
    assert_lease_lost(backend.commit(vec![t]).await, "stale cache put");
    let mut t1 = turn(ainv, ca.epoch, at(3), hold(at(90_000)));
    t1.cache_put = vec![(k3, b"undone".to_vec())];
    let mut t2 = turn(binv, cb.epoch, at(3), hold(at(90_000)));
    t2.events = vec![event(0, b"dup")];
    assert_conflict(backend.commit(vec![t1, t2]).await, "batch with cache put");
    assert_eq!(backend.cache_get(k3).await.unwrap(), None);

    // Within one turn the first entry of a key wins too.
    let mut t = turn(ainv, ca.epoch, at(4), finish());
    t.cache_put = vec![(k3, b"one".to_vec()), (k3, b"two".to_vec())];
    commit(&backend, vec![t]).await;
    assert_eq!(backend.cache_get(k3).await.unwrap(), Some(b"one".to_vec()));
}

// ---------------------------------------------------------------- idempotency

/// `begin_idempotent` takes a free key, re-admits its owner, reports a
/// running owner or a stored result; `idempotency_done` stores the result
/// (only the owner may), `idempotency_released` frees the key (only the
/// owner's).
pub async fn idempotency_begin_done_and_release(backend: Arc<dyn Backend>) {
    let (a, ca) = running(&backend, "app::a").await;
    let (b, cb) = running(&backend, "app::b").await;
    let (ainv, binv) = (a.root.invocation, b.root.invocation);
    let other = InvocationId::child_of(ainv, Seq(7));

    assert_eq!(
        backend.begin_idempotent("pay-1", ainv).await.unwrap(),
        IdempotencyBegin::Owner
    );
    assert_eq!(
        backend.begin_idempotent("pay-1", ainv).await.unwrap(),
        IdempotencyBegin::Owner
    );
    assert_eq!(
        backend.begin_idempotent("pay-1", binv).await.unwrap(),
        IdempotencyBegin::Running { owner: ainv }
    );

    // Only the owner may finish the key; the refused turn leaves nothing.
    let mut t = turn(binv, cb.epoch, at(1), hold(at(90_000)));
    t.events = vec![event(1, b"b tried")];
    t.idempotency_done = vec![("pay-1".into(), b"b's".to_vec())];
    assert_conflict(backend.commit(vec![t]).await, "done by non-owner");
    assert_eq!(seqs(&backend, binv).await, vec![0]);
    let mut t = turn(binv, cb.epoch, at(1), hold(at(90_000)));
    t.idempotency_done = vec![("never-taken".into(), b"x".to_vec())];
    assert_conflict(backend.commit(vec![t]).await, "done of a free key");
    assert_eq!(
        backend
            .begin_idempotent("never-taken", other)
            .await
            .unwrap(),
        IdempotencyBegin::Owner
    );
    // A non-owner's release does nothing.
    let mut t = turn(binv, cb.epoch, at(1), hold(at(90_000)));
    t.idempotency_released = vec!["pay-1".into(), "missing".into()];
    commit(&backend, vec![t]).await;
    assert_eq!(
        backend.begin_idempotent("pay-1", binv).await.unwrap(),
        IdempotencyBegin::Running { owner: ainv }
    );

    let mut t = turn(ainv, ca.epoch, at(2), hold(at(90_000)));
    t.idempotency_done = vec![("pay-1".into(), b"receipt".to_vec())];
    commit(&backend, vec![t]).await;
    for who in [ainv, binv, other] {
        assert_eq!(
            backend.begin_idempotent("pay-1", who).await.unwrap(),
            IdempotencyBegin::Done(b"receipt".to_vec())
        );
    }

    // A released key is free for the next caller.
    assert_eq!(
        backend.begin_idempotent("pay-2", ainv).await.unwrap(),
        IdempotencyBegin::Owner
    );
    let mut t = turn(ainv, ca.epoch, at(3), hold(at(90_000)));
    t.idempotency_released = vec!["pay-2".into()];
    commit(&backend, vec![t]).await;
    assert_eq!(
        backend.begin_idempotent("pay-2", binv).await.unwrap(),
        IdempotencyBegin::Owner
    );
    assert_eq!(
        backend.begin_idempotent("pay-2", ainv).await.unwrap(),
        IdempotencyBegin::Running { owner: binv }
    );
    // Release and done in a refused (stale) turn change nothing.
    let mut t = turn(binv, LeaseEpoch(cb.epoch.0 + 1), at(4), finish());
    t.idempotency_done = vec![("pay-2".into(), b"stale".to_vec())];
    assert_lease_lost(backend.commit(vec![t]).await, "stale done");
    assert_eq!(
        backend.begin_idempotent("pay-2", ainv).await.unwrap(),
        IdempotencyBegin::Running { owner: binv }
    );
}

// ---------------------------------------------------------------- ending executions

/// `end_execution` ends a non-terminal (even a paused) execution: status,
/// terminal event and `completed_at` are set, every task not done is
/// cancelled (never claimed, counted or woken; a held lease is lost and its
/// holder's commits refused); its dead letters and the idempotency keys its
/// invocations were running are removed. It returns false for an execution
/// that had already ended, and `NotFound` for an unknown one.
pub async fn end_execution_cancels_unfinished_tasks(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::root").await;
    let inv = exec.root.invocation;
    let done_child = InvocationId::child_of(inv, Seq(1));
    let ready_child = InvocationId::child_of(inv, Seq(2));
    let waiting_child = InvocationId::child_of(inv, Seq(3));
    let doomed_child = InvocationId::child_of(inv, Seq(4));
    let mut t = turn(inv, c.epoch, at(1), hold(at(100_000)));
    t.events = vec![event(1, b"a"), event(2, b"b"), event(3, b"c")];
    t.spawn = vec![
        invocation(done_child, exec.id, "app::done", Routing::default(), at(1)),
        invocation(
            ready_child,
            exec.id,
            "app::ready",
            Routing::default(),
            at(1_000),
        ),
        invocation(
            waiting_child,
            exec.id,
            "app::wait",
            Routing::default(),
            at(1),
        ),
        invocation(
            doomed_child,
            exec.id,
            "app::doomed",
            Routing::default(),
            at(1),
        ),
    ];
    t.idempotency_done = vec![("k-done".into(), b"kept".to_vec())];
    for key in ["k-done", "k-running"] {
        assert_eq!(
            backend.begin_idempotent(key, inv).await.unwrap(),
            IdempotencyBegin::Owner
        );
    }
    commit(&backend, vec![t]).await;
    let kids = claim(
        &backend,
        request("w2", at(2), &["app::done", "app::wait", "app::doomed"]),
    )
    .await;
    assert_eq!(kids.len(), 3);
    let turns = kids
        .iter()
        .map(|k| {
            let d = if k.invocation == done_child {
                deliver_to(inv, b"done")
            } else if k.invocation == doomed_child {
                dead_letter("doomed")
            } else {
                park(None)
            };
            turn(k.invocation, k.epoch, at(3), d)
        })
        .collect();
    commit(&backend, turns).await;
    let other = execution("app::other", at(0));
    create(&backend, &other).await;

    assert!(
        backend
            .end_execution(
                exec.id,
                ExecutionStatus::Cancelled,
                b"cancelled".to_vec(),
                at(50)
            )
            .await
            .unwrap()
    );
    let rec = record(&backend, exec.id).await;
    assert_eq!(rec.status, ExecutionStatus::Cancelled);
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"cancelled"[..]));
    assert_eq!(rec.completed_at, Some(at(50)));
    // Its dead letters are gone (their tasks are cancelled), and so are the
    // idempotency keys it was running; finished keys stay.
    assert_eq!(backend.get_dead_letter(doomed_child).await.unwrap(), None);
    let stranger = other.root.invocation;
    assert_eq!(
        backend
            .begin_idempotent("k-running", stranger)
            .await
            .unwrap(),
        IdempotencyBegin::Owner
    );
    assert_eq!(
        backend.begin_idempotent("k-done", stranger).await.unwrap(),
        IdempotencyBegin::Done(b"kept".to_vec())
    );

    // Nothing of it is claimable, counted or woken any more.
    assert_eq!(backend.queue_depth(None, at(50)).await.unwrap(), 1);
    assert!(matches!(
        backend.send_signal(exec.id, "poke", vec![], at(51)).await,
        Err(StoreError::ExecutionEnded { .. })
    ));
    let all = [
        "app::root",
        "app::done",
        "app::ready",
        "app::wait",
        "app::doomed",
        "app::other",
    ];
    assert_eq!(
        claimed_ids(&backend, request("w", at(1_000_000_000), &all)).await,
        vec![other.root.invocation]
    );
    assert_eq!(backend.queue_depth(None, at(52)).await.unwrap(), 0);
    // The root's lease is gone.
    assert_eq!(
        backend
            .renew_leases(&worker("w1"), &[(inv, c.epoch)], at(0), at(200_000))
            .await
            .unwrap(),
        vec![inv]
    );
    // The ending closes the root journal, after its last event.
    let journal = backend.read_journal(inv, Seq(4)).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].seq, Seq(4));
    assert_eq!(journal[0].kind, "cancelled");
    assert_eq!(journal[0].bytes, b"cancelled");
    assert_eq!(journal[0].recorded_at, at(50));
    // The lease holder's turn, written for the same seq, is refused for
    // its lease, not taken for a duplicate.
    let mut t = turn(inv, c.epoch, at(53), hold(at(200_000)));
    t.events = vec![event(4, b"too late")];
    assert_lease_lost(backend.commit(vec![t]).await, "commit after end");
    assert_eq!(seqs(&backend, inv).await, vec![0, 1, 2, 3, 4]);

    // A second end changes nothing.
    assert!(
        !backend
            .end_execution(exec.id, ExecutionStatus::TimedOut, b"late".to_vec(), at(60))
            .await
            .unwrap()
    );
    let again = record(&backend, exec.id).await;
    assert_eq!(again, rec);
    match backend
        .end_execution(
            ExecutionId::new_random(),
            ExecutionStatus::Cancelled,
            vec![],
            at(60),
        )
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    // A paused execution can be ended; a completed one cannot.
    let (paused, cp) = running(&backend, "app::paused").await;
    commit(
        &backend,
        vec![turn(
            paused.root.invocation,
            cp.epoch,
            at(70),
            TaskDisposition::Pause {
                report: "diverged".into(),
            },
        )],
    )
    .await;
    assert!(
        backend
            .end_execution(
                paused.id,
                ExecutionStatus::TimedOut,
                b"timed out".to_vec(),
                at(80)
            )
            .await
            .unwrap()
    );
    let rec = record(&backend, paused.id).await;
    assert_eq!(rec.status, ExecutionStatus::TimedOut);
    assert_eq!(rec.completed_at, Some(at(80)));
    let journal = backend
        .read_journal(paused.root.invocation, Seq(0))
        .await
        .unwrap();
    let last = journal.last().expect("journal");
    assert_eq!((last.seq, last.kind.as_str()), (Seq(1), "timed_out"));

    let (completed, cc) = running(&backend, "app::completed").await;
    commit(
        &backend,
        vec![turn(
            completed.root.invocation,
            cc.epoch,
            at(90),
            outcome(ExecutionStatus::Completed, b"ok"),
        )],
    )
    .await;
    assert!(
        !backend
            .end_execution(completed.id, ExecutionStatus::Cancelled, vec![], at(95))
            .await
            .unwrap()
    );
    let rec = record(&backend, completed.id).await;
    assert_eq!(rec.status, ExecutionStatus::Completed);
    assert_eq!(rec.completed_at, Some(at(90)));
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"ok"[..]));
    assert_eq!(seqs(&backend, completed.root.invocation).await, vec![0]);
}

// ---------------------------------------------------------------- cleanup

/// `cleanup(before)` deletes the executions that ended before `before` with
/// all their rows (tasks, journals, inbox items, signals, dead letters) and
/// counts them; a dry run only counts. Running, paused and recently ended
/// executions are untouched.
pub async fn cleanup_removes_only_old_ended_executions(backend: Arc<dyn Backend>) {
    // old: ended (completed) at 100, with a finished child whose result sits
    // in the root's inbox, a dead-lettered child and a signal.
    let (old, c) = running(&backend, "app::old").await;
    let root = old.root.invocation;
    let kid = InvocationId::child_of(root, Seq(1));
    let dead_kid = InvocationId::child_of(root, Seq(2));
    let mut t = turn(root, c.epoch, at(1), hold(at(100_000)));
    t.events = vec![event(1, b"s1"), event(2, b"s2")];
    t.spawn = vec![
        invocation(kid, old.id, "app::kid", Routing::default(), at(1)),
        invocation(dead_kid, old.id, "app::dead_kid", Routing::default(), at(1)),
    ];
    commit(&backend, vec![t]).await;
    let kids = claim(
        &backend,
        request("w2", at(2), &["app::kid", "app::dead_kid"]),
    )
    .await;
    assert_eq!(kids.len(), 2);
    let turns = kids
        .iter()
        .map(|k| {
            let mut t = if k.invocation == kid {
                turn(kid, k.epoch, at(3), deliver_to(root, b"kid done"))
            } else {
                turn(dead_kid, k.epoch, at(3), dead_letter("no"))
            };
            t.events = vec![event(1, b"kid event")];
            t
        })
        .collect();
    commit(&backend, turns).await;
    backend
        .send_signal(old.id, "s", b"payload".to_vec(), at(4))
        .await
        .unwrap();
    let mut t = turn(
        root,
        c.epoch,
        at(100),
        outcome(ExecutionStatus::Completed, b"ok"),
    );
    t.events = vec![event(3, b"completed")];
    commit(&backend, vec![t]).await;
    // root 4 events, kid 2, dead_kid 2.

    // ended: never claimed, cancelled at 150 (1 task, 2 events: started
    // and its ending).
    let ended = execution("app::ended", at(0));
    create(&backend, &ended).await;
    assert!(
        backend
            .end_execution(ended.id, ExecutionStatus::Cancelled, vec![], at(150))
            .await
            .unwrap()
    );
    // recent: failed at 300.
    let (recent, rc) = running(&backend, "app::recent").await;
    commit(
        &backend,
        vec![turn(
            recent.root.invocation,
            rc.epoch,
            at(300),
            outcome(ExecutionStatus::Failed, b"failed"),
        )],
    )
    .await;
    // active: running since 0; paused: paused at 10. Never cleaned.
    let (active, _) = running(&backend, "app::active").await;
    let (paused, pc) = running(&backend, "app::paused").await;
    commit(
        &backend,
        vec![turn(
            paused.root.invocation,
            pc.epoch,
            at(10),
            TaskDisposition::Pause {
                report: "diverged".into(),
            },
        )],
    )
    .await;

    let expected = CleanupCounts {
        executions: 2,
        tasks: 4,
        events: 10,
    };
    assert_eq!(backend.cleanup(at(200), true).await.unwrap(), expected);
    // A dry run deletes nothing.
    assert!(backend.execution(old.id).await.unwrap().is_some());
    assert_eq!(seqs(&backend, kid).await, vec![0, 1]);
    assert_eq!(backend.inbox(root).await.unwrap().len(), 1);
    assert!(backend.get_dead_letter(dead_kid).await.unwrap().is_some());
    // `before` is exclusive.
    assert_eq!(backend.cleanup(at(300), true).await.unwrap(), expected);
    assert_eq!(
        backend.cleanup(at(301), true).await.unwrap(),
        CleanupCounts {
            executions: 3,
            tasks: 5,
            events: 11,
        }
    );

    assert_eq!(backend.cleanup(at(200), false).await.unwrap(), expected);
    for gone in [old.id, ended.id] {
        assert!(backend.execution(gone).await.unwrap().is_none());
    }
    for inv in [root, kid, dead_kid, ended.root.invocation] {
        assert!(seqs(&backend, inv).await.is_empty());
        assert!(backend.inbox(inv).await.unwrap().is_empty());
    }
    assert!(
        backend
            .pending_signals(old.id, &["s".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(backend.get_dead_letter(dead_kid).await.unwrap(), None);
    assert!(backend.list_dead_letters(10).await.unwrap().is_empty());
    // Signalling a deleted execution: it is unknown now.
    assert!(matches!(
        backend.send_signal(old.id, "s", vec![], at(400)).await,
        Err(StoreError::NotFound(_))
    ));

    // The others are intact.
    for kept in [recent.id, active.id, paused.id] {
        assert!(backend.execution(kept).await.unwrap().is_some());
    }
    assert_eq!(seqs(&backend, recent.root.invocation).await, vec![0]);
    assert_eq!(seqs(&backend, active.root.invocation).await, vec![0]);
    let listed = backend
        .list_executions(ExecutionFilter::default().limit(10).offset(0))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);

    // Nothing is left to clean before 200; much later only `recent` ends.
    assert_eq!(
        backend.cleanup(at(200), false).await.unwrap(),
        CleanupCounts::default()
    );
    assert_eq!(
        backend.cleanup(at(1_000_000), false).await.unwrap(),
        CleanupCounts {
            executions: 1,
            tasks: 1,
            events: 1,
        }
    );
    assert!(backend.execution(active.id).await.unwrap().is_some());
    assert!(backend.execution(paused.id).await.unwrap().is_some());
}

// ---------------------------------------------------------------- execution journal

/// `read_execution_journal` returns the journal rows of every invocation of
/// the execution, grouped by invocation in task creation order, each in seq
/// order, optionally only rows of some kinds (an invocation left without
/// rows is left out). Rows of other executions never appear.
pub async fn read_execution_journal_groups_by_invocation(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::root").await;
    let root = exec.root.invocation;
    // Spawned in this order: the higher seq first, so creation order and
    // id order differ.
    let late = InvocationId::child_of(root, Seq(5));
    let early = InvocationId::child_of(root, Seq(3));
    let mut t = turn(root, c.epoch, at(1), park(None));
    t.events = vec![event(2, b"r2"), event(1, b"r1")];
    t.events[1].kind = EventKind::TimerStarted;
    t.spawn = vec![
        invocation(late, exec.id, "app::child", Routing::default(), at(1)),
        invocation(early, exec.id, "app::child", Routing::default(), at(1)),
    ];
    commit(&backend, vec![t]).await;
    let kids = claim(&backend, request("w2", at(2), &["app::child"])).await;
    assert_eq!(ids(&kids), vec![late, early]);
    let turns = kids
        .iter()
        .map(|k| {
            let mut t = turn(k.invocation, k.epoch, at(3), hold(at(90_000)));
            t.events = vec![event(1, k.invocation.as_uuid().as_bytes())];
            t
        })
        .collect();
    commit(&backend, turns).await;
    // Another execution's rows must not appear.
    let (other, oc) = running(&backend, "app::other").await;
    let mut t = turn(other.root.invocation, oc.epoch, at(4), hold(at(90_000)));
    t.events = vec![event(1, b"other")];
    commit(&backend, vec![t]).await;

    let all = backend
        .read_execution_journal(exec.id, None)
        .await
        .expect("read_execution_journal");
    assert_eq!(
        all.iter().map(|(inv, _)| *inv).collect::<Vec<_>>(),
        vec![root, late, early]
    );
    for (inv, rows) in &all {
        let expected = backend.read_journal(*inv, Seq(0)).await.unwrap();
        assert_eq!(rows, &expected, "journal of {inv}");
    }
    assert_eq!(
        all[0].1.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(all[1].1[1].bytes, late.as_uuid().as_bytes());

    let started = backend
        .read_execution_journal(exec.id, Some(&[EventKind::Started]))
        .await
        .unwrap();
    assert_eq!(started.len(), 3);
    assert!(
        started
            .iter()
            .all(|(_, rows)| rows.len() == 1 && rows[0].kind == "started")
    );
    assert_eq!(started[1].1[0].bytes, started_bytes(late));

    let timers = backend
        .read_execution_journal(
            exec.id,
            Some(&[EventKind::TimerStarted, EventKind::Completed]),
        )
        .await
        .unwrap();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].0, root);
    assert_eq!(timers[0].1.len(), 1);
    assert_eq!(timers[0].1[0].seq, Seq(1));
    assert_eq!(timers[0].1[0].bytes, b"r1");

    let none: &[EventKind] = &[];
    assert!(
        backend
            .read_execution_journal(exec.id, Some(none))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .read_execution_journal(ExecutionId::new_random(), None)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------- inspection

/// `list_tasks` lists tasks in creation order, filtered by execution, state
/// and queue and paged; `task` reads one; `stats` counts executions per
/// status, tasks per state, per-queue work and dead letters.
pub async fn inspect_tasks_and_stats(backend: Arc<dyn Backend>) {
    use stent_journal::store::{QueueStats, TaskFilter, TaskState};

    // e1: leased in "a"; e2: ready in "b", due at 9s; e3: waiting in "a";
    // e4: dead in "c"; e5: done in "a".
    let e1 = execution_with("app::one", routing("a", 3, &["x"]), at(0));
    let mut e2 = execution_with("app::two", routing("b", 0, &[]), at(0));
    e2.root.run_at = at(9_000);
    let e3 = execution_with("app::three", routing("a", 0, &[]), at(0));
    let e4 = execution_with("app::four", routing("c", 0, &[]), at(0));
    let e5 = execution_with("app::five", routing("a", 0, &[]), at(0));
    let all = [&e1, &e2, &e3, &e4, &e5];
    for e in all {
        create(&backend, e).await;
    }
    let c1 = claim_one(&backend, request("w1", at(1), &["app::one"])).await;
    let c3 = claim_one(&backend, request("w1", at(1), &["app::three"])).await;
    commit(
        &backend,
        vec![turn(e3.root.invocation, c3.epoch, at(2), park(None))],
    )
    .await;
    let c4 = claim_one(&backend, request("w2", at(1), &["app::four"])).await;
    commit(
        &backend,
        vec![turn(
            e4.root.invocation,
            c4.epoch,
            at(3),
            dead_letter("boom"),
        )],
    )
    .await;
    let c5 = claim_one(&backend, request("w2", at(1), &["app::five"])).await;
    commit(
        &backend,
        vec![turn(
            e5.root.invocation,
            c5.epoch,
            at(4),
            TaskDisposition::Finish {
                deliver: None,
                execution: Some(ExecutionOutcome {
                    status: ExecutionStatus::Completed,
                    terminal_event: b"completed".to_vec(),
                }),
            },
        )],
    )
    .await;

    let t1 = backend
        .task(e1.root.invocation)
        .await
        .unwrap()
        .expect("task of e1");
    assert_eq!(t1.invocation, e1.root.invocation);
    assert_eq!(t1.execution, e1.id);
    assert_eq!(t1.function, "app::one");
    assert_eq!(t1.routing, routing("a", 3, &["x"]));
    assert_eq!(t1.state, TaskState::Leased);
    assert_eq!(t1.lease_owner, Some(worker("w1")));
    assert_eq!(t1.lease_until, Some(at(30_001)));
    assert_eq!(t1.epoch, c1.epoch);
    assert_eq!(t1.attempts, 1);
    assert_eq!(t1.retries, 0);
    let t2 = backend.task(e2.root.invocation).await.unwrap().unwrap();
    assert_eq!(t2.state, TaskState::Ready);
    assert_eq!(t2.run_at, at(9_000));
    assert_eq!(t2.lease_owner, None);
    assert_eq!(t2.lease_until, None);
    let ghost = InvocationId::child_of(e1.root.invocation, Seq(7));
    assert_eq!(backend.task(ghost).await.unwrap(), None);

    let list = |filter: TaskFilter| {
        let backend = backend.clone();
        async move {
            backend
                .list_tasks(filter)
                .await
                .unwrap()
                .into_iter()
                .map(|t| (t.execution, t.state))
                .collect::<Vec<_>>()
        }
    };
    let page = |limit, offset| TaskFilter::default().limit(limit).offset(offset);
    use TaskState::*;
    let expected = vec![
        (e1.id, Leased),
        (e2.id, Ready),
        (e3.id, Waiting),
        (e4.id, Dead),
        (e5.id, Done),
    ];
    assert_eq!(list(page(100, 0)).await, expected);
    assert_eq!(list(page(2, 1)).await, expected[1..3].to_vec());
    assert_eq!(list(page(10, 5)).await, vec![]);
    assert_eq!(list(page(0, 0)).await, vec![]);
    assert_eq!(
        list(page(100, 0).queue("a".to_string())).await,
        vec![(e1.id, Leased), (e3.id, Waiting), (e5.id, Done)]
    );
    assert_eq!(list(page(100, 0).state(Dead)).await, vec![(e4.id, Dead)]);
    assert_eq!(
        list(page(100, 0).execution(e3.id)).await,
        vec![(e3.id, Waiting)]
    );
    assert_eq!(
        list(page(100, 0).queue("a".to_string()).state(Ready)).await,
        vec![]
    );

    let stats = backend.stats(at(10)).await.unwrap();
    let executions: std::collections::HashMap<_, _> = stats.executions.iter().copied().collect();
    assert_eq!(stats.executions.len(), ExecutionStatus::ALL.len());
    assert_eq!(executions.values().sum::<u64>(), 5);
    assert_eq!(executions[&ExecutionStatus::Pending], 1);
    assert_eq!(executions[&ExecutionStatus::Completed], 1);
    assert_eq!(
        stats.tasks,
        vec![
            (Ready, 1),
            (Leased, 1),
            (Waiting, 1),
            (Done, 1),
            (Paused, 0),
            (Dead, 1),
            (Cancelled, 0),
        ]
    );
    let q = |queue: &str, ready, due, leased, waiting| QueueStats {
        queue: queue.to_string(),
        ready,
        due,
        leased,
        waiting,
    };
    assert_eq!(stats.queues, vec![q("a", 0, 0, 1, 1), q("b", 1, 0, 0, 0)]);
    assert_eq!(stats.dead_letters, 1);
    let later = backend.stats(at(9_000)).await.unwrap();
    assert_eq!(later.queues[1], q("b", 1, 1, 0, 0));
}

/// A worker's announcement is kept (a later one replaces it, queues and
/// tags `None` mean any), listed by id, and forgotten when retired.
pub async fn workers_announce_and_retire(backend: Arc<dyn Backend>) {
    let record = |id: &str, seen: i64| WorkerRecord {
        id: worker(id),
        functions: vec!["app::f".into(), "app::g".into()],
        queues: Some(vec!["default".into(), "payments".into()]),
        tags: None,
        started_at: at(1),
        seen_at: at(seen),
        expires_at: at(seen + 30_000),
    };
    assert!(backend.workers().await.unwrap().is_empty());
    backend.announce_worker(&record("w2", 10)).await.unwrap();
    backend.announce_worker(&record("w1", 10)).await.unwrap();
    let mut again = record("w2", 20);
    again.functions = vec!["app::h".into()];
    again.queues = None;
    again.tags = Some(vec!["gpu".into()]);
    backend.announce_worker(&again).await.unwrap();
    let all = backend.workers().await.unwrap();
    assert_eq!(all, vec![record("w1", 10), again]);
    backend.retire_worker(&worker("w1")).await.unwrap();
    backend.retire_worker(&worker("ghost")).await.unwrap();
    let all = backend.workers().await.unwrap();
    assert_eq!(
        all.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w2"]
    );
}
