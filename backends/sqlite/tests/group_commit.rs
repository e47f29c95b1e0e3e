//! Group commit: concurrent writes share one transaction, yet each keeps its
//! own all-or-nothing result.
//!
//! The tests run on tokio's current-thread runtime and start their writes
//! with [`join_all`], which polls every write once (sending its request)
//! before the writer task gets to run: the writer then finds them all queued
//! and applies them as one group, in the order they were sent. No timing is
//! involved.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use stent_journal::store::{
    ClaimRequest, ClaimedTask, CleanupCounts, DatabaseErrorKind, DeadLetterStore, ExecutionOutcome,
    ExecutionStatus, ExecutionStore, IdempotencyBegin, IdempotencyStore, JournalStore, LeaseGrant,
    NewEvent, NewExecution, NewInvocation, Routing, SignalId, SignalStore, StoreError, StoreResult,
    TaskDisposition, TaskStore, TurnCommit,
};
use stent_journal::{EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};
use stent_sqlite::SqliteBackend;

mod common;

use common::TempPath;

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
        code_version: None,
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
        code_version: None,
        also_runs: Vec::new(),
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
        events,
        ..TurnCommit::bare(
            inv,
            epoch,
            Timestamp(2_500),
            TaskDisposition::Hold {
                lease_until: Timestamp(1_000_000_000),
            },
        )
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
        .renew_leases(
            &WorkerId::new("w1"),
            &kept,
            Timestamp(0),
            Timestamp(1_000_000_000),
        )
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
            Timestamp(0),
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
                // Its started event and the ending appended when it ended.
                events: 2,
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
            Err(StoreError::Database(e)) => {
                assert!(e.message().starts_with("create_execution:"), "{e}");
                assert!(e.message().contains("locked"), "{e}");
                assert_eq!(e.kind(), DatabaseErrorKind::Contention, "{e}");
                assert!(e.code().is_some(), "SQLite's result code is kept: {e}");
                assert!(
                    std::error::Error::source(&e).is_some(),
                    "the driver's error is kept"
                );
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

// ---------------------------------------------------------------- batching
//
// A group is first applied batched: many turns fenced in one statement, the
// rows of many turns inserted in one. These tests check that batching
// changes nothing a caller can see.

/// A child of `parent` at `seq`, ready at once (or leased to `w1` at epoch 1).
fn child(parent: &NewExecution, seq: u32, leased: bool) -> NewInvocation {
    let invocation = InvocationId::child_of(parent.root.invocation, Seq(seq));
    NewInvocation {
        invocation,
        execution: parent.id,
        function: "app::child".into(),
        routing: Routing::default(),
        run_at: Timestamp(0),
        started_event: invocation.to_string().into_bytes(),
        lease: leased.then(|| LeaseGrant {
            worker: WorkerId::new("w1"),
            until: Timestamp(1_000_000_000),
        }),
    }
}

/// One commit of 300 turns (more than one batched statement takes) of every
/// disposition, each appending two events and spawning a child: every write
/// lands, the children are claimed in spawn order, and each disposition
/// does what it does alone.
#[tokio::test]
async fn a_commit_of_hundreds_of_turns_lands_whole() {
    const N: usize = 300;
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let execs: Vec<_> = (0..N).map(|i| new_execution("app::f", i as i64)).collect();
    let b = &backend;
    let creates: Vec<BoxFuture<'_, StoreResult<()>>> = execs
        .iter()
        .map(|e| {
            let e = e.clone();
            Box::pin(async move { b.create_execution(e).await }) as BoxFuture<'_, _>
        })
        .collect();
    for result in join_all(creates).await {
        result.unwrap();
    }
    let claimed = backend
        .claim(claim_request("w1", 1_000, 1_000_000_000, N))
        .await
        .unwrap();
    assert_eq!(claimed.len(), N);

    let kind = |i: usize| i % 7;
    let turns: Vec<TurnCommit> = execs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut t = turn(
                e.root.invocation,
                LeaseEpoch(1),
                vec![event(1, i as u8), event(2, i as u8)],
            );
            t.now = Timestamp(2_000 + i as i64);
            t.spawn = vec![child(e, 1, false)];
            t.disposition = match kind(i) {
                0 => TaskDisposition::Hold {
                    lease_until: Timestamp(1_000_000_000),
                },
                1 => TaskDisposition::Park { run_at: None },
                2 => TaskDisposition::Park {
                    run_at: Some(Timestamp(5_000)),
                },
                3 => TaskDisposition::Retry {
                    run_at: Timestamp(5_000),
                    error: format!("retry {i}"),
                },
                4 => TaskDisposition::Finish {
                    deliver: None,
                    execution: Some(ExecutionOutcome {
                        status: ExecutionStatus::Completed,
                        terminal_event: vec![i as u8],
                    }),
                },
                5 => TaskDisposition::DeadLetter {
                    reason: format!("boom {i}"),
                },
                _ => TaskDisposition::Pause {
                    report: format!("diverged {i}"),
                },
            };
            t
        })
        .collect();
    let before = backend.transactions_committed();
    backend.commit(turns).await.unwrap();
    assert_eq!(backend.transactions_committed() - before, 1);

    for (i, e) in execs.iter().enumerate() {
        let rows = backend
            .read_journal(e.root.invocation, Seq(0))
            .await
            .unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.seq.0, r.bytes.clone())).collect();
        assert_eq!(
            got,
            vec![
                (0, vec![0xa1, 0x00]),
                (1, vec![i as u8; 32]),
                (2, vec![i as u8; 32]),
            ],
            "root {i}"
        );
        assert_eq!(rows[1].recorded_at, Timestamp(2_000 + i as i64));
        let kid = child(e, 1, false);
        let rows = backend.read_journal(kid.invocation, Seq(0)).await.unwrap();
        assert_eq!(rows.len(), 1, "child {i}");
        assert_eq!(rows[0].kind, "started");
        assert_eq!(rows[0].bytes, kid.started_event);
        assert_eq!(rows[0].recorded_at, Timestamp(2_000 + i as i64));
    }

    // The children (same priority and run_at) come in creation order.
    let mut kids = claim_request("w2", 3_000, 1_000_000_000, N);
    kids.functions = vec!["app::child".into()];
    let kids: Vec<_> = backend
        .claim(kids)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.invocation)
        .collect();
    let spawned: Vec<_> = execs
        .iter()
        .map(|e| child(e, 1, false).invocation)
        .collect();
    assert_eq!(kids, spawned);

    // Nothing of the roots is claimable before 5000; then the timed parks
    // and the retries are, the retries counted.
    assert!(
        backend
            .claim(claim_request("w2", 4_999, 1_000_000_000, N))
            .await
            .unwrap()
            .is_empty()
    );
    let due = backend
        .claim(claim_request("w2", 5_000, 1_000_000_000, N))
        .await
        .unwrap();
    let mut got: Vec<_> = due.iter().map(|c| (c.invocation, c.retries)).collect();
    got.sort();
    let mut expected: Vec<_> = (0..N)
        .filter(|&i| matches!(kind(i), 2 | 3))
        .map(|i| (execs[i].root.invocation, u32::from(kind(i) == 3)))
        .collect();
    expected.sort();
    assert_eq!(got, expected);

    // The held leases are still held at epoch 1.
    let held: Vec<_> = (0..N)
        .filter(|&i| kind(i) == 0)
        .map(|i| (execs[i].root.invocation, LeaseEpoch(1)))
        .collect();
    let lost = backend
        .renew_leases(
            &WorkerId::new("w1"),
            &held,
            Timestamp(0),
            Timestamp(1_000_000_001),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());

    // Finished, dead-lettered and paused ones.
    for (i, e) in execs.iter().enumerate() {
        let rec = backend.execution(e.id).await.unwrap().unwrap();
        match kind(i) {
            4 => {
                assert_eq!(rec.status, ExecutionStatus::Completed, "execution {i}");
                assert_eq!(rec.terminal_event, Some(vec![i as u8]));
                assert_eq!(rec.completed_at, Some(Timestamp(2_000 + i as i64)));
            }
            6 => {
                assert_eq!(rec.status, ExecutionStatus::Paused, "execution {i}");
                assert_eq!(rec.pause_report, Some(format!("diverged {i}")));
            }
            _ => assert_eq!(rec.status, ExecutionStatus::Running, "execution {i}"),
        }
    }
    let dead = backend.list_dead_letters(N).await.unwrap();
    let mut got: Vec<_> = dead.iter().map(|d| (d.task, d.reason.clone())).collect();
    got.sort();
    let mut expected: Vec<_> = (0..N)
        .filter(|&i| kind(i) == 5)
        .map(|i| (execs[i].root.invocation, format!("boom {i}")))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// Duplicates among the rows of one batched insert (a seq already in the
/// journal, the same seq appended by two requests, the same child spawned
/// by two requests) fail exactly the requests that wrote them second, each
/// with its own conflict; the rest of the group commits.
#[tokio::test]
async fn a_duplicate_in_a_batched_insert_fails_only_its_own_request() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let execs: Vec<_> = (0..5).map(|i| new_execution("app::f", i)).collect();
    for e in &execs {
        backend.create_execution(e.clone()).await.unwrap();
    }
    let claimed = backend
        .claim(claim_request("w1", 100, 1_000_000_000, 5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    let r: Vec<InvocationId> = execs.iter().map(|e| e.root.invocation).collect();
    let epoch = LeaseEpoch(1);
    let twin = child(&execs[2], 9, false);

    let mut spawning = turn(r[2], epoch, vec![event(1, 2)]);
    spawning.spawn = vec![twin.clone()];
    let mut respawning = turn(r[3], epoch, vec![event(1, 3)]);
    let mut other = twin.clone();
    other.started_event = b"second".to_vec();
    respawning.spawn = vec![other];
    let fresh = new_execution("app::f", 200);
    let plans: Vec<TurnCommit> = vec![
        // 0: fine.
        turn(r[0], epoch, vec![event(1, 0), event(2, 0)]),
        // 1: seq 0 holds the started event.
        turn(r[1], epoch, vec![event(1, 1), event(0, 1)]),
        // 2: fine, spawns `twin`.
        spawning,
        // 3: spawns `twin` again.
        respawning,
        // 4: seq 2 of r0 was appended by 0, earlier in the group.
        turn(r[0], epoch, vec![event(2, 4)]),
        // 5: fine.
        turn(r[4], epoch, vec![event(1, 5), event(2, 5), event(3, 5)]),
    ];
    let before = backend.transactions_committed();
    let b = &backend;
    let mut writes: Vec<BoxFuture<'_, StoreResult<()>>> = plans
        .into_iter()
        .map(|t| Box::pin(async move { b.commit(vec![t]).await }) as BoxFuture<'_, _>)
        .collect();
    let created = fresh.clone();
    writes.push(Box::pin(async move { b.create_execution(created).await }));
    let results = join_all(writes).await;
    assert_eq!(backend.transactions_committed() - before, 1);

    let conflict = |i: usize, needles: &[String]| match &results[i] {
        Err(StoreError::Conflict(msg)) => {
            for needle in needles {
                assert!(msg.contains(needle.as_str()), "request {i}: {msg}");
            }
        }
        other => panic!("request {i}: expected a conflict, got {other:?}"),
    };
    for i in [0, 2, 5, 6] {
        assert!(results[i].is_ok(), "request {i}: {:?}", results[i]);
    }
    conflict(1, &[r[1].to_string(), "seq 0".into()]);
    conflict(3, &[twin.invocation.to_string(), "already exists".into()]);
    conflict(4, &[r[0].to_string(), "seq 2".into()]);

    assert_eq!(seqs(&backend, r[0]).await, [0, 1, 2]);
    assert_eq!(
        backend.read_journal(r[0], Seq(2)).await.unwrap()[0].bytes,
        vec![0; 32]
    );
    assert_eq!(seqs(&backend, r[1]).await, [0]);
    assert_eq!(seqs(&backend, r[2]).await, [0, 1]);
    assert_eq!(seqs(&backend, r[3]).await, [0]);
    assert_eq!(seqs(&backend, r[4]).await, [0, 1, 2, 3]);
    let rows = backend.read_journal(twin.invocation, Seq(0)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bytes, twin.started_event);
    assert!(backend.execution(fresh.id).await.unwrap().is_some());
}

/// Writes of a group see the writes of the requests before them, whatever
/// batching keeps for later: a turn of a root created (leased) earlier in
/// the group holds its lease, and one sent before the create does not; a
/// pause after an outcome recorded earlier in the group stands.
#[tokio::test]
async fn batched_writes_are_seen_by_later_requests_of_the_group() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let leased = |at: i64| {
        let mut e = new_execution("app::f", at);
        e.root.lease = Some(LeaseGrant {
            worker: WorkerId::new("w1"),
            until: Timestamp(1_000_000_000),
        });
        e
    };
    // An execution whose root finishes while a child pauses.
    let parent = new_execution("app::f", 0);
    backend.create_execution(parent.clone()).await.unwrap();
    let c = backend
        .claim(claim_request("w1", 0, 1_000_000_000, 1))
        .await
        .unwrap()
        .remove(0);
    let kid = child(&parent, 1, true);
    let mut spawn = turn(c.invocation, c.epoch, vec![event(1, 1)]);
    spawn.spawn = vec![kid.clone()];
    backend.commit(vec![spawn]).await.unwrap();

    let early = leased(10);
    let mut finish = turn(c.invocation, c.epoch, vec![event(2, 2)]);
    finish.disposition = TaskDisposition::Finish {
        deliver: None,
        execution: Some(ExecutionOutcome {
            status: ExecutionStatus::Completed,
            terminal_event: b"done".to_vec(),
        }),
    };
    let mut pause = turn(kid.invocation, LeaseEpoch(1), Vec::new());
    pause.disposition = TaskDisposition::Pause {
        report: "diverged".into(),
    };
    let before = backend.transactions_committed();
    let b = &backend;
    let created = early.clone();
    let root = early.root.invocation;
    let writes: Vec<BoxFuture<'_, StoreResult<()>>> = vec![
        Box::pin(async move { b.create_execution(created).await }),
        Box::pin(async move {
            b.commit(vec![turn(root, LeaseEpoch(1), vec![event(1, 9)])])
                .await
        }),
        Box::pin(async move { b.commit(vec![finish]).await }),
        Box::pin(async move { b.commit(vec![pause]).await }),
    ];
    for result in join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(backend.transactions_committed() - before, 1);
    assert_eq!(seqs(&backend, root).await, [0, 1]);
    let rec = backend.execution(parent.id).await.unwrap().unwrap();
    assert_eq!(rec.status, ExecutionStatus::Paused);
    assert_eq!(rec.pause_report.as_deref(), Some("diverged"));
    assert_eq!(rec.terminal_event.as_deref(), Some(&b"done"[..]));

    // A turn sent before the create of its root finds no lease.
    let late = leased(20);
    let root = late.root.invocation;
    let created = late.clone();
    let writes: Vec<BoxFuture<'_, StoreResult<()>>> = vec![
        Box::pin(async move {
            b.commit(vec![turn(root, LeaseEpoch(1), vec![event(1, 9)])])
                .await
        }),
        Box::pin(async move { b.create_execution(created).await }),
    ];
    let mut results = join_all(writes).await.into_iter();
    match results.next() {
        Some(Err(StoreError::LeaseLost { invocation, epoch })) => {
            assert_eq!((invocation, epoch), (root, LeaseEpoch(1)));
        }
        other => panic!("expected the lease to be lost, got {other:?}"),
    }
    results.next().unwrap().unwrap();
    assert_eq!(seqs(&backend, root).await, [0]);
}
