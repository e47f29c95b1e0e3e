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

use std::collections::HashSet;
use std::sync::Arc;

use stent_journal::store::{
    Backend, ClaimRequest, ClaimedTask, Delivery, ExecutionFilter, ExecutionOutcome,
    ExecutionStatus, LeaseGrant, NewEvent, NewExecution, NewInvocation, Routing, StoreError,
    TaskDisposition, TurnCommit,
};
use stent_journal::{EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};

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
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            $factory;
            create_execution_is_atomic,
            create_execution_rejects_duplicates,
            create_execution_with_lease,
            journal_reads_from_seq,
            journal_seq_is_unique_and_batch_rolls_back,
            commit_batch_is_all_or_nothing,
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
            lease_renewal_and_expiry,
            hold_extends_the_lease,
            park_waits_or_schedules,
            wake_during_turn_makes_parked_task_ready,
            spawn_with_and_without_lease,
            spawn_of_existing_invocation_conflicts,
            delivery_wakes_waiting_parent,
            consumed_inbox_is_removed_once,
            signal_to_unknown_execution_is_not_found,
            signals_are_ordered_and_consumed_once,
            signal_wakes_tasks_of_its_execution,
            finish_with_outcome_updates_execution,
            pause_stores_report,
            list_executions_pages_and_filters,
            queue_depth_counts_ready_tasks,
            payload_bytes_round_trip,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = ($factory).await;
                let backend = $crate::Fixture::backend(&fixture);
                $crate::$name(backend).await;
                drop(fixture);
            }
        )*
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
    TurnCommit {
        invocation,
        epoch,
        now,
        events: Vec::new(),
        spawn: Vec::new(),
        consumed_inbox: Vec::new(),
        consumed_signals: Vec::new(),
        disposition,
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
    match backend.commit(vec![ta.clone(), tb]).await {
        Err(StoreError::LeaseLost { invocation, epoch }) => {
            assert_eq!(invocation, binv);
            assert_eq!(epoch, LeaseEpoch(epoch_of(binv).0 + 7));
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
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
    assert_eq!(second.attempts, 2);

    let mut stale = turn(inv, first.epoch, at(1_002), park(None));
    stale.events = vec![event(2, b"w1-2")];
    stale.spawn = vec![invocation(
        InvocationId::child_of(inv, Seq(2)),
        exec.id,
        "app::child",
        Routing::default(),
        at(0),
    )];
    match backend.commit(vec![stale]).await {
        Err(StoreError::LeaseLost { invocation, epoch }) => {
            assert_eq!(invocation, inv);
            assert_eq!(epoch, first.epoch);
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(seqs(&backend, inv).await, vec![0, 1]);
    assert!(
        seqs(&backend, InvocationId::child_of(inv, Seq(2)))
            .await
            .is_empty()
    );

    let lost = backend
        .renew_leases(&worker("w1"), &[(inv, first.epoch)], at(50_000))
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
        .renew_leases(&worker("w1"), &kept, at(10_000_000))
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
        .renew_leases(&worker("w1"), &[(ca.invocation, ca.epoch)], at(5_000))
        .await
        .unwrap();
    assert!(lost.is_empty());
    let lost = backend
        .renew_leases(&worker("w2"), &[(ca.invocation, ca.epoch)], at(9_000))
        .await
        .unwrap();
    assert_eq!(lost, vec![ca.invocation]);
    let lost = backend
        .renew_leases(
            &worker("w1"),
            &[(ca.invocation, LeaseEpoch(ca.epoch.0 + 1))],
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
        .renew_leases(&worker("w3"), &[(ghost, LeaseEpoch(1))], at(9_000))
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
        .renew_leases(&worker("w1"), &[(inv, c.epoch)], at(99_999))
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
    assert_eq!((c3.epoch, c3.attempts), (LeaseEpoch(3), 3));
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
        .renew_leases(&worker("w1"), &[(leased, LeaseEpoch(1))], at(20_000))
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

/// Inbox items consumed by a turn disappear; consuming one that is gone, or
/// that belongs to another invocation, is a `Conflict`.
pub async fn consumed_inbox_is_removed_once(backend: Arc<dyn Backend>) {
    let (exec, c) = running(&backend, "app::parent").await;
    let parent = exec.root.invocation;
    let kids: Vec<InvocationId> = (1..=3)
        .map(|i| InvocationId::child_of(parent, Seq(i)))
        .collect();
    let mut t = turn(parent, c.epoch, at(1), hold(at(50_000)));
    t.spawn = kids
        .iter()
        .map(|k| invocation(*k, exec.id, "app::child", Routing::default(), at(1)))
        .collect();
    commit(&backend, vec![t]).await;
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

/// Pending signals come in id order, filtered by name and execution; a
/// consumed signal is gone, and consuming it again is a `Conflict`.
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
    assert!(
        backend
            .pending_signals(exec.id, &[])
            .await
            .unwrap()
            .is_empty()
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
    backend
        .send_signal(exec.id, "late", vec![], at(80))
        .await
        .unwrap();
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
        .list_executions(ExecutionFilter {
            status: Some(ExecutionStatus::Paused),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].id, exec.id);
}

// ---------------------------------------------------------------- listing

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
    let page = |status, limit, offset| ExecutionFilter {
        status,
        limit,
        offset,
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
