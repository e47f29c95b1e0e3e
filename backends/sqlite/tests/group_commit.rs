//! Group commit: concurrent writes share one transaction, yet each keeps its
//! own all-or-nothing result.
//!
//! The tests run on tokio's current-thread runtime and start their writes
//! with [`join_all`], which polls every write once (sending its request)
//! before the writer task gets to run: the writer then finds them all queued
//! and applies them as one group, in the order they were sent. No timing is
//! involved.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use stent_journal::store::{
    ClaimRequest, ClaimedTask, CleanupCounts, DeadLetterStore, ExecutionStatus, ExecutionStore,
    IdempotencyBegin, IdempotencyStore, JournalStore, NewEvent, NewExecution, NewInvocation,
    Routing, SignalId, SignalStore, StoreError, StoreResult, TaskDisposition, TaskStore,
    TurnCommit,
};
use stent_journal::{EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};
use stent_sqlite::SqliteBackend;

/// A temporary database path; the file and its WAL files are removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(label: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!(
            "stent-sqlite-{label}-{}.db",
            ExecutionId::new_random()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Polls every future (in order) until all are done; their outputs in order.
async fn join_all<'a, T>(futures: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    let mut futures: Vec<Option<BoxFuture<'a, T>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *output = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("finished")).collect()
}

fn new_execution(function: &str, at: i64) -> NewExecution {
    let id = ExecutionId::new_random();
    NewExecution {
        id,
        function: function.into(),
        created_at: Timestamp(at),
        deadline: None,
        root: NewInvocation {
            invocation: id.root_invocation(),
            execution: id,
            function: function.into(),
            routing: Routing::default(),
            run_at: Timestamp(at),
            started_event: vec![0xa1, 0x00],
            lease: None,
        },
    }
}

fn claim_request(worker: &str, now: i64, lease_until: i64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker: WorkerId::new(worker),
        now: Timestamp(now),
        lease_until: Timestamp(lease_until),
        limit,
        queues: None,
        tags: None,
        functions: vec!["app::f".into()],
        concurrency_limits: Vec::new(),
    }
}

fn event(seq: u32, byte: u8) -> NewEvent {
    NewEvent {
        seq: Seq(seq),
        kind: EventKind::SideEffect,
        call_key: None,
        bytes: vec![byte; 32],
    }
}

fn turn(inv: InvocationId, epoch: LeaseEpoch, events: Vec<NewEvent>) -> TurnCommit {
    TurnCommit {
        invocation: inv,
        epoch,
        now: Timestamp(2_500),
        events,
        spawn: Vec::new(),
        consumed_inbox: Vec::new(),
        consumed_signals: Vec::new(),
        cache_put: Vec::new(),
        idempotency_done: Vec::new(),
        idempotency_released: Vec::new(),
        disposition: TaskDisposition::Hold {
            lease_until: Timestamp(1_000_000_000),
        },
    }
}

async fn seqs(backend: &SqliteBackend, inv: InvocationId) -> Vec<u32> {
    backend
        .read_journal(inv, Seq(0))
        .await
        .expect("read_journal")
        .into_iter()
        .map(|r| r.seq.0)
        .collect()
}

/// What each commit of the burst is meant to do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Appends seq 1: succeeds.
    Good,
    /// Writes with epoch 1 after another worker took the task over (epoch 2).
    Stale,
    /// Appends seq 0 again: a conflict on its only statement.
    Duplicate,
    /// Appends seq 1 and then seq 1 again: the first insert must be undone.
    HalfWritten,
}

fn plan(i: usize) -> Plan {
    match i % 4 {
        0 => Plan::Good,
        1 => Plan::Stale,
        2 => Plan::Duplicate,
        _ => Plan::HalfWritten,
    }
}

enum Outcome {
    Committed(StoreResult<()>),
    Created(StoreResult<()>),
    Claimed(StoreResult<Vec<ClaimedTask>>),
    Signalled(StoreResult<SignalId>),
}

/// Many concurrent commits, some fenced out and some conflicting, plus a
/// create, a signal and a claim behind them: each gets its own result, the
/// later writes see the earlier ones, the successful writes all survive a
/// reopen, and the whole burst took far fewer transactions than writes.
#[tokio::test]
async fn concurrent_writes_share_transactions_but_keep_their_own_results() {
    const N: usize = 80;
    let tmp = TempPath::new("group");
    let backend = SqliteBackend::open(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();

    let mut invs = Vec::new();
    for i in 0..N {
        let exec = new_execution("app::f", i as i64);
        backend.create_execution(exec.clone()).await.unwrap();
        invs.push(exec.root.invocation);
    }
    // w1 claims everything until 1000 and keeps all but the stale ones.
    let first = backend
        .claim(claim_request("w1", 100, 1_000, N))
        .await
        .unwrap();
    assert_eq!(first.len(), N);
    assert!(first.iter().all(|c| c.epoch == LeaseEpoch(1)));
    let kept: Vec<_> = (0..N)
        .filter(|&i| plan(i) != Plan::Stale)
        .map(|i| (invs[i], LeaseEpoch(1)))
        .collect();
    let lost = backend
        .renew_leases(&WorkerId::new("w1"), &kept, Timestamp(1_000_000_000))
        .await
        .unwrap();
    assert!(lost.is_empty());
    // w2 takes the stale ones over once their lease ran out.
    let taken = backend
        .claim(claim_request("w2", 2_000, 100_000, N))
        .await
        .unwrap();
    assert_eq!(taken.len(), N / 4);
    assert!(taken.iter().all(|c| c.epoch == LeaseEpoch(2)));

    let fresh = new_execution("app::f", 2_000);
    let before = backend.transactions_committed();
    let mut writes: Vec<BoxFuture<'_, Outcome>> = Vec::new();
    for (i, &inv) in invs.iter().enumerate() {
        let events = match plan(i) {
            Plan::Good | Plan::Stale => vec![event(1, i as u8)],
            Plan::Duplicate => vec![event(0, i as u8)],
            Plan::HalfWritten => vec![event(1, i as u8), event(1, i as u8)],
        };
        let t = turn(inv, LeaseEpoch(1), events);
        let b = &backend;
        writes.push(Box::pin(async move {
            Outcome::Committed(b.commit(vec![t]).await)
        }));
    }
    let b = &backend;
    let created = fresh.clone();
    writes.push(Box::pin(async move {
        Outcome::Created(b.create_execution(created).await)
    }));
    writes.push(Box::pin(async move {
        Outcome::Signalled(
            b.send_signal(fresh.id, "go", vec![1], Timestamp(2_500))
                .await,
        )
    }));
    writes.push(Box::pin(async move {
        Outcome::Claimed(b.claim(claim_request("w3", 2_500, 100_000, N)).await)
    }));
    let requests = writes.len() as u64;
    let outcomes = join_all(writes).await;
    let transactions = backend.transactions_committed() - before;
    assert!(
        transactions < requests,
        "{transactions} transactions for {requests} concurrent writes: no grouping"
    );

    for (i, outcome) in outcomes.into_iter().enumerate() {
        match (i.checked_sub(N), outcome) {
            (None, Outcome::Committed(result)) => match (plan(i), result) {
                (Plan::Good, Ok(())) => {}
                (Plan::Stale, Err(StoreError::LeaseLost { invocation, epoch })) => {
                    assert_eq!((invocation, epoch), (invs[i], LeaseEpoch(1)));
                }
                (Plan::Duplicate | Plan::HalfWritten, Err(StoreError::Conflict(msg))) => {
                    assert!(msg.contains(&invs[i].to_string()), "{msg}");
                }
                (p, other) => panic!("commit {i} ({p:?}): unexpected {other:?}"),
            },
            (Some(0), Outcome::Created(result)) => result.expect("create in the group"),
            (Some(1), Outcome::Signalled(result)) => {
                // Sees the execution created just before it in the group.
                result.expect("signal to the execution created in the group");
            }
            // Sees the execution created before it in the group, and nothing
            // else: every other task is leased.
            (Some(2), Outcome::Claimed(result)) => {
                let claimed = result.expect("claim in the group");
                assert_eq!(claimed.len(), 1, "{claimed:?}");
                assert_eq!(claimed[0].invocation, fresh.root.invocation);
                assert_eq!(claimed[0].epoch, LeaseEpoch(1));
            }
            (n, _) => panic!("write {i} ({n:?}): outcome of the wrong kind"),
        }
    }

    // Every successful write, and nothing of the failed ones, survives a reopen.
    drop(backend);
    let backend = SqliteBackend::open_existing(&tmp.0).await.unwrap();
    for (i, &inv) in invs.iter().enumerate() {
        let expected: &[u32] = match plan(i) {
            Plan::Good => &[0, 1],
            _ => &[0],
        };
        assert_eq!(seqs(&backend, inv).await, expected, "invocation {i}");
    }
    let rec = backend.execution(fresh.id).await.unwrap().expect("created");
    assert_eq!(rec.status.as_str(), "running");
    let signals = backend
        .pending_signals(fresh.id, &["go".to_string()])
        .await
        .unwrap();
    assert_eq!(signals.len(), 1);
    // The fenced-out writes left the new owner's lease alone.
    let lost = backend
        .renew_leases(
            &WorkerId::new("w2"),
            &taken
                .iter()
                .map(|c| (c.invocation, c.epoch))
                .collect::<Vec<_>>(),
            Timestamp(200_000),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
}

/// A group in which every write succeeds commits once, and a claim in it
/// sees a task released by a commit before it.
#[tokio::test]
async fn a_claim_sees_a_commit_earlier_in_its_group() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let exec = new_execution("app::f", 0);
    backend.create_execution(exec.clone()).await.unwrap();
    let c = backend
        .claim(claim_request("w1", 0, 1_000_000, 1))
        .await
        .unwrap()
        .remove(0);
    let mut park = turn(c.invocation, c.epoch, vec![event(1, 1)]);
    park.disposition = TaskDisposition::Park {
        run_at: Some(Timestamp(10)),
    };
    let before = backend.transactions_committed();
    let b = &backend;
    let writes: Vec<BoxFuture<'_, Outcome>> = vec![
        Box::pin(async move { Outcome::Committed(b.commit(vec![park]).await) }),
        Box::pin(async move { Outcome::Claimed(b.claim(claim_request("w2", 20, 100, 5)).await) }),
    ];
    let outcomes = join_all(writes).await;
    assert_eq!(backend.transactions_committed() - before, 1);
    let mut outcomes = outcomes.into_iter();
    assert!(matches!(outcomes.next(), Some(Outcome::Committed(Ok(())))));
    match outcomes.next() {
        Some(Outcome::Claimed(Ok(claimed))) => {
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].invocation, c.invocation);
            assert_eq!(claimed[0].epoch, LeaseEpoch(2));
        }
        _ => panic!("the claim should have taken the parked task"),
    }
}

enum Admin {
    Began(StoreResult<IdempotencyBegin>),
    Ended(StoreResult<bool>),
    Replayed(StoreResult<bool>),
    Discarded(StoreResult<bool>),
    Cleaned(StoreResult<CleanupCounts>),
}

/// The administrative writes (idempotency keys, ending executions, dead
/// letters, cleanup) go through the writer too: sent together they share
/// one transaction, each sees the ones before it, and a failing one (an
/// unknown execution) fails alone.
#[tokio::test]
async fn administrative_writes_are_grouped_too() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let execs: Vec<_> = (0..3).map(|i| new_execution("app::f", i)).collect();
    for e in &execs {
        backend.create_execution(e.clone()).await.unwrap();
    }
    let claimed = backend
        .claim(claim_request("w1", 10, 1_000_000, 3))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // Dead-letter the first two tasks.
    let turns = claimed[..2]
        .iter()
        .map(|c| {
            let mut t = turn(c.invocation, c.epoch, Vec::new());
            t.disposition = TaskDisposition::DeadLetter {
                reason: "boom".into(),
            };
            t
        })
        .collect();
    backend.commit(turns).await.unwrap();
    let (a, b, c) = (&execs[0], &execs[1], &execs[2]);

    let before = backend.transactions_committed();
    let be = &backend;
    let writes: Vec<BoxFuture<'_, Admin>> = vec![
        Box::pin(async move { Admin::Began(be.begin_idempotent("k", a.root.invocation).await) }),
        Box::pin(async move { Admin::Began(be.begin_idempotent("k", b.root.invocation).await) }),
        Box::pin(async move {
            Admin::Ended(
                be.end_execution(c.id, ExecutionStatus::Cancelled, vec![1], Timestamp(20))
                    .await,
            )
        }),
        Box::pin(async move {
            Admin::Ended(
                be.end_execution(
                    ExecutionId::new_random(),
                    ExecutionStatus::Cancelled,
                    vec![],
                    Timestamp(20),
                )
                .await,
            )
        }),
        Box::pin(async move {
            Admin::Replayed(
                be.replay_dead_letter(a.root.invocation, None, true, Timestamp(30))
                    .await,
            )
        }),
        Box::pin(async move {
            Admin::Discarded(
                be.discard_dead_letter(b.root.invocation, None, None, Timestamp(30))
                    .await,
            )
        }),
        // Sees c ended earlier in the group.
        Box::pin(async move { Admin::Cleaned(be.cleanup(Timestamp(25), false).await) }),
    ];
    let outcomes = join_all(writes).await;
    assert_eq!(backend.transactions_committed() - before, 1);
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().expect("an outcome per write");
    assert!(matches!(next(), Admin::Began(Ok(IdempotencyBegin::Owner))));
    match next() {
        Admin::Began(Ok(IdempotencyBegin::Running { owner })) => {
            assert_eq!(owner, a.root.invocation)
        }
        _ => panic!("the second begin should see the first owner"),
    }
    assert!(matches!(next(), Admin::Ended(Ok(true))));
    assert!(matches!(next(), Admin::Ended(Err(StoreError::NotFound(_)))));
    assert!(matches!(next(), Admin::Replayed(Ok(true))));
    assert!(matches!(next(), Admin::Discarded(Ok(true))));
    match next() {
        Admin::Cleaned(Ok(counts)) => assert_eq!(
            counts,
            CleanupCounts {
                executions: 1,
                tasks: 1,
                events: 1,
            }
        ),
        _ => panic!("the cleanup should have removed the ended execution"),
    }
    assert!(backend.execution(c.id).await.unwrap().is_none());
    assert!(backend.list_dead_letters(10).await.unwrap().is_empty());
    let again = backend
        .claim(claim_request("w2", 40, 1_000_000, 3))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].invocation, a.root.invocation);
}

/// When the group's transaction cannot start (another process holds the
/// write lock past the busy timeout), every write in it fails with the
/// database error, nothing is half-applied, and the writer carries on.
#[tokio::test]
async fn a_group_that_cannot_start_fails_every_write_and_the_writer_recovers() {
    let tmp = TempPath::new("locked");
    let backend = SqliteBackend::builder(&tmp.0)
        .busy_timeout(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    backend.init_db().await.unwrap();
    let execs: Vec<_> = (0..5).map(|i| new_execution("app::f", i)).collect();

    let mut other = SqliteConnection::connect(&format!("sqlite://{}", tmp.0.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let b = &backend;
    let writes: Vec<BoxFuture<'_, StoreResult<()>>> = execs
        .iter()
        .map(|e| {
            let e = e.clone();
            Box::pin(async move { b.create_execution(e).await }) as BoxFuture<'_, _>
        })
        .collect();
    for result in join_all(writes).await {
        match result {
            Err(StoreError::Database(msg)) => {
                assert!(msg.starts_with("create_execution:"), "{msg}");
                assert!(msg.contains("locked"), "{msg}");
            }
            other => panic!("expected a database error, got {other:?}"),
        }
    }
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    for e in &execs {
        assert!(backend.execution(e.id).await.unwrap().is_none());
        backend.create_execution(e.clone()).await.unwrap();
    }
    let claimed = backend
        .claim(claim_request("w", 100, 1_000, 10))
        .await
        .unwrap();
    assert_eq!(claimed.len(), execs.len());
}

/// Callers that give up before their write is applied do not disturb the
/// writer or the other writes of the group; a dropped write either happened
/// entirely or not at all.
#[tokio::test]
async fn dropped_callers_do_not_disturb_their_group() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let execs: Vec<_> = (0..20).map(|i| new_execution("app::f", i)).collect();
    {
        // Poll each create once (sending it), then drop every other one.
        let mut futures: Vec<_> = execs
            .iter()
            .map(|e| backend.create_execution(e.clone()))
            .collect();
        std::future::poll_fn(|cx| {
            for f in &mut futures {
                assert!(f.as_mut().poll(cx).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        let mut kept = Vec::new();
        for (i, f) in futures.into_iter().enumerate() {
            if i % 2 == 0 {
                kept.push(f as BoxFuture<'_, StoreResult<()>>);
            }
        }
        for result in join_all(kept).await {
            result.unwrap();
        }
    }
    for (i, e) in execs.iter().enumerate() {
        let found = backend.execution(e.id).await.unwrap().is_some();
        // Dropped before the writer ran: skipped.
        assert_eq!(found, i % 2 == 0, "execution {i}");
    }
    // The writer still works.
    backend.create_execution(execs[1].clone()).await.unwrap();
    assert!(backend.execution(execs[1].id).await.unwrap().is_some());
}

/// The writer task ends once the last handle of the backend is dropped.
#[tokio::test]
async fn the_writer_task_ends_with_the_last_handle() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let other = backend.clone();
    backend
        .create_execution(new_execution("app::f", 0))
        .await
        .unwrap();
    assert_eq!(alive(), before + 1, "one writer task per backend");
    drop(backend);
    other
        .create_execution(new_execution("app::f", 1))
        .await
        .unwrap();
    assert_eq!(alive(), before + 1, "a clone keeps it running");
    drop(other);
    // Let it notice; no clock involved, just turns of the scheduler.
    for _ in 0..1_000 {
        if alive() == before {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the writer task is still alive");
}
