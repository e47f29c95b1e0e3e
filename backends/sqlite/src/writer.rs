//! The writer task and group commit.
//!
//! Every write is a [`Request`] sent over a channel to one task that owns the
//! writer connection. The task takes whatever requests are queued (at least
//! one, at most [`MAX_GROUP`]; it never waits for more), applies them in
//! arrival order inside one `BEGIN IMMEDIATE` transaction, commits once, and
//! then answers every request. Under concurrency one fsync thus makes many
//! requests durable.
//!
//! Each request stays all-or-nothing with its own result: a group is first
//! applied batched and without savepoints (the common case: nothing fails),
//! the writes of its commits and creates merged into few statements (see
//! [`crate::batch`]); if anything fails, the transaction is rolled back and
//! the group applied again request by request, statement by statement, with
//! one savepoint per request, a failed request rolled back to its savepoint.
//! Either way a request sees the writes of those before it.
//!
//! A caller that gives up (its future is dropped) does not disturb the task:
//! its answer is discarded, and if it gave up before its group started, its
//! request is skipped. The task ends when the last [`SqliteBackend`] handle
//! is dropped (the channel closes).
//!
//! [`SqliteBackend`]: crate::SqliteBackend

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqliteConnection;
use stent_journal::store::{
    ClaimRequest, ClaimedTask, CleanupCounts, DatabaseError, Delivery, ExecutionOutcome,
    ExecutionStatus, IdempotencyBegin, NewExecution, SignalId, StoreError, StoreResult, TurnCommit,
    WorkerRecord,
};
use stent_journal::{ExecutionId, InvocationId, LeaseEpoch, Timestamp, WorkerId};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::batch::Batch;
use crate::{sql, store};

/// Most requests applied in one transaction.
const MAX_GROUP: usize = 128;

/// Where a request's result goes.
pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// A request's reply channel, and its result once applied.
pub(crate) struct Pending<T> {
    reply: Reply<T>,
    result: Option<StoreResult<T>>,
}

impl<T> Pending<T> {
    pub(crate) fn new(reply: Reply<T>) -> Self {
        Pending {
            reply,
            result: None,
        }
    }

    /// Keeps `result`; true if it is a success.
    fn set(&mut self, result: StoreResult<T>) -> bool {
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn succeeded(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    /// Sends the result. `failure` is the transaction's error if it did not
    /// commit: a success (or a request never applied) gets that error, a
    /// failure keeps its own.
    fn answer(self, op: &str, failure: Option<&DatabaseError>) {
        let result = match (self.result, failure) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)) | None, Some(error)) => {
                Err(StoreError::Database(error.clone().context(op)))
            }
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(StoreError::database(format!(
                "{op}: the write was not applied"
            ))),
        };
        // The caller may have given up; nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// One write, with the channel its result goes back on.
pub(crate) enum Request {
    CreateExecution(NewExecution, Pending<()>),
    Claim(ClaimRequest, Pending<Vec<ClaimedTask>>),
    RenewLeases {
        worker: WorkerId,
        leases: Vec<(InvocationId, LeaseEpoch)>,
        until: Timestamp,
        pending: Pending<Vec<InvocationId>>,
    },
    Commit(Vec<TurnCommit>, Pending<()>),
    SendSignal {
        execution: ExecutionId,
        name: String,
        payload: Vec<u8>,
        key: Option<String>,
        now: Timestamp,
        pending: Pending<SignalId>,
    },
    BeginIdempotent {
        key: String,
        owner: InvocationId,
        pending: Pending<IdempotencyBegin>,
    },
    EndExecution {
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
        pending: Pending<bool>,
    },
    Cleanup {
        before: Timestamp,
        pending: Pending<CleanupCounts>,
    },
    ReplayDeadLetter {
        task: InvocationId,
        queue: Option<String>,
        reset_retries: bool,
        now: Timestamp,
        pending: Pending<bool>,
    },
    DiscardDeadLetter {
        task: InvocationId,
        deliver: Option<Delivery>,
        outcome: Option<ExecutionOutcome>,
        now: Timestamp,
        pending: Pending<bool>,
    },
    ResumeExecution {
        id: ExecutionId,
        now: Timestamp,
        pending: Pending<bool>,
    },
    ForgiveTakeover {
        invocation: InvocationId,
        epoch: LeaseEpoch,
        pending: Pending<()>,
    },
    AnnounceWorker(WorkerRecord, Pending<()>),
    RetireWorker(WorkerId, Pending<()>),
}

/// Evaluates `$body` with `$p` bound to the request's [`Pending`] (whatever
/// its result type) and `$op` to the operation's name.
macro_rules! with_pending {
    ($request:expr, |$p:ident, $op:ident| $body:expr) => {
        match $request {
            Request::CreateExecution(_, $p) => {
                let $op = store::CREATE_EXECUTION;
                $body
            }
            Request::Claim(_, $p) => {
                let $op = store::CLAIM;
                $body
            }
            Request::RenewLeases { pending: $p, .. } => {
                let $op = store::RENEW_LEASES;
                $body
            }
            Request::Commit(_, $p) => {
                let $op = store::COMMIT;
                $body
            }
            Request::SendSignal { pending: $p, .. } => {
                let $op = store::SEND_SIGNAL;
                $body
            }
            Request::BeginIdempotent { pending: $p, .. } => {
                let $op = store::BEGIN_IDEMPOTENT;
                $body
            }
            Request::EndExecution { pending: $p, .. } => {
                let $op = store::END_EXECUTION;
                $body
            }
            Request::Cleanup { pending: $p, .. } => {
                let $op = store::CLEANUP;
                $body
            }
            Request::ReplayDeadLetter { pending: $p, .. } => {
                let $op = store::REPLAY_DEAD_LETTER;
                $body
            }
            Request::DiscardDeadLetter { pending: $p, .. } => {
                let $op = store::DISCARD_DEAD_LETTER;
                $body
            }
            Request::ResumeExecution { pending: $p, .. } => {
                let $op = store::RESUME_EXECUTION;
                $body
            }
            Request::ForgiveTakeover { pending: $p, .. } => {
                let $op = store::FORGIVE_TAKEOVER;
                $body
            }
            Request::AnnounceWorker(_, $p) => {
                let $op = store::ANNOUNCE_WORKER;
                $body
            }
            Request::RetireWorker(_, $p) => {
                let $op = store::RETIRE_WORKER;
                $body
            }
        }
    };
}

impl Request {
    /// True when the caller no longer waits for the answer.
    fn abandoned(&self) -> bool {
        with_pending!(self, |p, _op| p.reply.is_closed())
    }

    /// Forgets the result of an earlier attempt.
    fn reset(&mut self) {
        with_pending!(self, |p, _op| p.result = None)
    }

    /// Applies the request on `conn` (inside the open transaction) and keeps
    /// its result until the transaction's fate is known. True on success.
    async fn apply(&mut self, conn: &mut SqliteConnection) -> bool {
        match self {
            Request::CreateExecution(execution, p) => {
                p.set(store::create_in(conn, execution, None).await)
            }
            Request::Claim(request, p) => p.set(store::claim_in(conn, request).await),
            Request::RenewLeases {
                worker,
                leases,
                until,
                pending,
            } => pending.set(store::renew_in(conn, worker, leases, *until).await),
            Request::Commit(turns, p) => p.set(store::commit_in(conn, turns).await),
            Request::SendSignal {
                execution,
                name,
                payload,
                key,
                now,
                pending,
            } => pending
                .set(store::signal_in(conn, *execution, name, payload, key.as_deref(), *now).await),
            Request::BeginIdempotent {
                key,
                owner,
                pending,
            } => pending.set(store::begin_idempotent_in(conn, key, *owner).await),
            Request::EndExecution {
                id,
                status,
                terminal_event,
                now,
                pending,
            } => {
                pending.set(store::end_execution_in(conn, *id, *status, terminal_event, *now).await)
            }
            Request::Cleanup { before, pending } => {
                pending.set(store::cleanup_in(conn, *before).await)
            }
            Request::ReplayDeadLetter {
                task,
                queue,
                reset_retries,
                now,
                pending,
            } => pending.set(
                store::replay_dead_letter_in(conn, *task, queue.as_deref(), *reset_retries, *now)
                    .await,
            ),
            Request::DiscardDeadLetter {
                task,
                deliver,
                outcome,
                now,
                pending,
            } => pending.set(
                store::discard_dead_letter_in(
                    conn,
                    *task,
                    deliver.as_ref(),
                    outcome.as_ref(),
                    *now,
                )
                .await,
            ),
            Request::ResumeExecution { id, now, pending } => {
                pending.set(store::resume_execution_in(conn, *id, *now).await)
            }
            Request::ForgiveTakeover {
                invocation,
                epoch,
                pending,
            } => pending.set(store::forgive_takeover_in(conn, *invocation, *epoch).await),
            Request::AnnounceWorker(worker, pending) => {
                pending.set(store::announce_worker_in(conn, worker).await)
            }
            Request::RetireWorker(worker, pending) => {
                pending.set(store::retire_worker_in(conn, worker).await)
            }
        }
    }

    /// True if it was applied and succeeded.
    fn succeeded(&self) -> bool {
        with_pending!(self, |p, _op| p.succeeded())
    }

    /// Sends the result; see [`Pending::answer`].
    fn answer(self, failure: Option<&DatabaseError>) {
        with_pending!(self, |p, op| p.answer(op, failure))
    }
}

/// The writer connection, and whether a transaction of ours may be open on
/// it (the writer task was stopped half-way, or a `ROLLBACK` failed).
pub(crate) struct WriterConn {
    conn: SqliteConnection,
    in_transaction: bool,
}

impl WriterConn {
    pub(crate) fn new(conn: SqliteConnection) -> Self {
        WriterConn {
            conn,
            in_transaction: false,
        }
    }

    /// The connection, outside any transaction.
    pub(crate) async fn conn(&mut self) -> &mut SqliteConnection {
        if self.in_transaction {
            // If this fails, either no transaction was open after all (SQLite
            // rolls back by itself on some errors) or the next statement
            // reports what is wrong; either way, do not retry forever.
            let _ = execute(&mut self.conn, sql::ROLLBACK).await;
            self.in_transaction = false;
        }
        &mut self.conn
    }

    /// The connection as it is; call [`conn`](Self::conn) first.
    pub(crate) fn get(&self) -> &SqliteConnection {
        &self.conn
    }

    /// The connection as it is; call [`conn`](Self::conn) first.
    pub(crate) fn get_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Rolls back the transaction of ours that may be open; if that fails,
    /// the next [`conn`](Self::conn) tries again.
    async fn roll_back(&mut self) {
        if self.in_transaction {
            let _ = self.end(sql::ROLLBACK).await;
        }
    }

    /// Ends the open transaction with `statement` (`COMMIT` or `ROLLBACK`).
    async fn end(&mut self, statement: &'static str) -> Result<(), DatabaseError> {
        execute(&mut self.conn, statement).await?;
        self.in_transaction = false;
        Ok(())
    }
}

/// Shared between the backend handles and the writer task.
pub(crate) struct Counters {
    transactions_committed: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            transactions_committed: AtomicU64::new(0),
        }
    }

    pub(crate) fn transactions_committed(&self) -> u64 {
        self.transactions_committed.load(Ordering::Relaxed)
    }
}

/// The writer task: runs groups of requests until every sender is gone.
pub(crate) async fn run(
    mut requests: mpsc::UnboundedReceiver<Request>,
    writer: Arc<Mutex<WriterConn>>,
    counters: Arc<Counters>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while requests.recv_many(&mut group, MAX_GROUP).await > 0 {
        group.retain(|r: &Request| !r.abandoned());
        if group.is_empty() {
            continue;
        }
        let mut writer = writer.lock().await;
        let committed = run_group(&mut writer, &mut group).await;
        drop(writer);
        if matches!(committed, Ok(true)) {
            counters
                .transactions_committed
                .fetch_add(1, Ordering::Relaxed);
        }
        for request in group.drain(..) {
            request.answer(committed.as_ref().err());
        }
    }
}

/// Applies `group` in one transaction. `Ok(true)` if it committed, `Ok(false)`
/// if there was nothing to commit (every request failed), `Err` (the
/// transaction's error) if it could not commit. Each applied request keeps
/// its own result.
///
/// The first attempt is batched (see [`crate::batch`]): requests rarely
/// fail, and batching needs far fewer statements. If anything fails, the
/// transaction is rolled back and the group applied again request by
/// request, statement by statement, with one savepoint per request (unless
/// it is alone), so that a failure undoes only its own writes and gets its
/// own error.
async fn run_group(writer: &mut WriterConn, group: &mut [Request]) -> Result<bool, DatabaseError> {
    match attempt_batched(writer, group).await {
        Batched::Committed => return Ok(true),
        // `attempt` rolls the batched attempt back first (`WriterConn::conn`).
        Batched::Failed => {}
        Batched::TransactionFailed(error) => {
            // Not left open until the next group: it holds the write lock.
            writer.roll_back().await;
            return Err(error);
        }
    }
    let all_ok = attempt(writer, group, group.len() > 1).await?;
    if all_ok || group.iter().any(Request::succeeded) {
        commit(writer).await
    } else {
        let _ = writer.end(sql::ROLLBACK).await;
        Ok(false)
    }
}

/// How the batched attempt at a group ended. Whether its transaction may
/// still be open is `WriterConn::in_transaction`.
enum Batched {
    /// Every request succeeded and the transaction committed.
    Committed,
    /// A request's statement failed (which request is not known).
    Failed,
    /// The `BEGIN` or the `COMMIT` failed: the group fails with this error.
    TransactionFailed(DatabaseError),
}

/// Applies the group batched in one transaction, `BEGIN` to `COMMIT`.
async fn attempt_batched(writer: &mut WriterConn, group: &mut [Request]) -> Batched {
    group.iter_mut().for_each(Request::reset);
    let conn = writer.conn().await;
    let mut batch = Batch::default();
    batch.begin();
    let committed = apply_batched(conn, &mut batch, group).await;
    writer.in_transaction = batch.began() && !committed;
    match batch.transaction_failure() {
        Some(error) => Batched::TransactionFailed(error),
        None if committed => Batched::Committed,
        None => Batched::Failed,
    }
}

/// Applies the group in the batch's transaction and commits: commits and
/// creates through the [`Batch`], other requests as they are (with the
/// batch sent before each). True if every request succeeded and the
/// transaction committed.
async fn apply_batched<'a>(
    conn: &mut SqliteConnection,
    batch: &mut Batch<'a>,
    group: &'a mut [Request],
) -> bool {
    // Succeeded once the batch is written.
    let mut batched: Vec<&mut Pending<()>> = Vec::new();
    for request in group.iter_mut() {
        match request {
            Request::Commit(turns, pending) => {
                batch.queue(turns);
                batched.push(pending);
            }
            Request::CreateExecution(execution, pending) => {
                if batch.create(conn, execution).await.is_err() {
                    return false;
                }
                batched.push(pending);
            }
            other => {
                if batch.settle(conn).await.is_err() || !other.apply(conn).await {
                    return false;
                }
            }
        }
    }
    if batch.commit(conn).await.is_err() {
        return false;
    }
    for pending in batched {
        pending.set(Ok(()));
    }
    true
}

/// Begins a transaction and applies the requests in order, statement by
/// statement. Without savepoints, stops at the first failure; with them,
/// applies every request, rolling each failed one back to its savepoint.
/// `Ok(true)` if every request succeeded; the transaction is then still
/// open. `Err` if the transaction itself failed; it is then rolled back.
async fn attempt(
    writer: &mut WriterConn,
    group: &mut [Request],
    savepoints: bool,
) -> Result<bool, DatabaseError> {
    group.iter_mut().for_each(Request::reset);
    execute(writer.conn().await, sql::BEGIN).await?;
    writer.in_transaction = true;
    let conn = &mut writer.conn;
    let mut all_ok = true;
    // Set when the transaction can no longer be trusted (a savepoint
    // statement failed, e.g. because an I/O error rolled everything back).
    let mut broken = None;
    for request in group.iter_mut() {
        if savepoints && let Err(error) = execute(conn, sql::SAVEPOINT).await {
            broken = Some(error);
            break;
        }
        let ok = request.apply(conn).await;
        all_ok &= ok;
        if !savepoints {
            if ok {
                continue;
            }
            break;
        }
        let ended = if ok {
            execute(conn, sql::RELEASE_SAVEPOINT).await
        } else {
            match execute(conn, sql::ROLLBACK_TO_SAVEPOINT).await {
                Ok(()) => execute(conn, sql::RELEASE_SAVEPOINT).await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = ended {
            broken = Some(error);
            break;
        }
    }
    if let Some(error) = broken {
        let _ = writer.end(sql::ROLLBACK).await;
        return Err(error);
    }
    Ok(all_ok)
}

/// Commits the open transaction; rolls it back if that fails.
async fn commit(writer: &mut WriterConn) -> Result<bool, DatabaseError> {
    match writer.end(sql::COMMIT).await {
        Ok(()) => Ok(true),
        Err(error) => {
            let _ = writer.end(sql::ROLLBACK).await;
            Err(error)
        }
    }
}

async fn execute(
    conn: &mut SqliteConnection,
    statement: &'static str,
) -> Result<(), DatabaseError> {
    sqlx::query(statement)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(crate::error::typed)
}

#[cfg(test)]
mod tests {
    //! The batched first attempt handles the common groups itself: these
    //! would pass through the fallback too, so the public tests cannot tell.

    use stent_journal::store::{
        Delivery, ExecutionOutcome, ExecutionStatus, ExecutionStore, InspectStore, JournalStore,
        LeaseGrant, NewEvent, NewExecution, NewInvocation, Routing, TaskDisposition, TaskStore,
    };
    use stent_journal::{EventKind, Seq};

    use super::*;
    use crate::SqliteBackend;

    fn lease() -> Option<LeaseGrant> {
        Some(LeaseGrant {
            worker: WorkerId::new("w"),
            until: Timestamp(1_000_000),
        })
    }

    fn invocation(id: InvocationId, execution: ExecutionId, leased: bool) -> NewInvocation {
        NewInvocation {
            invocation: id,
            execution,
            function: "f".into(),
            routing: Routing::default(),
            run_at: Timestamp(0),
            started_event: vec![0],
            lease: if leased { lease() } else { None },
        }
    }

    fn execution(leased: bool) -> NewExecution {
        let id = ExecutionId::new_random();
        NewExecution {
            id,
            function: "f".into(),
            created_at: Timestamp(0),
            deadline: None,
            root: invocation(id.root_invocation(), id, leased),
            code_version: None,
        }
    }

    fn turn(inv: InvocationId, now: i64, seqs: &[u32], disposition: TaskDisposition) -> TurnCommit {
        TurnCommit {
            events: seqs
                .iter()
                .map(|&s| NewEvent {
                    seq: Seq(s),
                    kind: EventKind::CallScheduled,
                    call_key: None,
                    bytes: vec![1],
                })
                .collect(),
            ..TurnCommit::bare(inv, LeaseEpoch(1), Timestamp(now), disposition)
        }
    }

    fn hold() -> TaskDisposition {
        TaskDisposition::Hold {
            lease_until: Timestamp(1_000_000),
        }
    }

    fn deliver(parent: InvocationId) -> TaskDisposition {
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent,
                event: vec![2],
            }),
            execution: None,
        }
    }

    /// Runs `group` batched on `backend`'s writer: whether it all
    /// succeeded there and committed, and each request's result.
    async fn batched(backend: &SqliteBackend, group: Vec<Request>) -> (bool, Vec<bool>) {
        let mut group = group;
        let mut writer = backend.inner.writer.lock().await;
        let ok = match attempt_batched(&mut writer, &mut group).await {
            Batched::Committed => true,
            Batched::Failed => {
                assert!(writer.in_transaction, "the BEGIN succeeded");
                writer.end(sql::ROLLBACK).await.unwrap();
                false
            }
            Batched::TransactionFailed(error) => panic!("the transaction failed: {error}"),
        };
        (ok, group.iter().map(Request::succeeded).collect())
    }

    fn commit_request(turns: Vec<TurnCommit>) -> Request {
        Request::Commit(turns, Pending::new(oneshot::channel().0))
    }

    #[tokio::test]
    async fn common_groups_need_no_fallback() {
        let backend = SqliteBackend::in_memory().await.unwrap();
        backend.init_db().await.unwrap();
        let parent = execution(true);
        backend.create_execution(parent.clone()).await.unwrap();
        let p = parent.root.invocation;
        let kids: Vec<InvocationId> = (1..=2).map(|i| InvocationId::child_of(p, Seq(i))).collect();
        let fresh = execution(true);
        let r = fresh.root.invocation;

        // A create and a turn of its root; a spawn and a turn of the
        // spawned child; a delivery to a parent that then parks; many
        // turns of many executions finishing them.
        let mut spawn = turn(p, 1, &[1, 2], hold());
        spawn.spawn = kids
            .iter()
            .map(|&k| invocation(k, parent.id, true))
            .collect();
        let mut group = vec![
            Request::CreateExecution(fresh.clone(), Pending::new(oneshot::channel().0)),
            commit_request(vec![turn(r, 1, &[1], hold())]),
            commit_request(vec![spawn, turn(kids[0], 2, &[1], deliver(p))]),
            commit_request(vec![
                turn(kids[1], 3, &[1], deliver(p)),
                turn(p, 4, &[3], TaskDisposition::Park { run_at: None }),
            ]),
        ];
        let mut many = Vec::new();
        for _ in 0..300 {
            let e = execution(true);
            let root = e.root.invocation;
            group.push(Request::CreateExecution(
                e.clone(),
                Pending::new(oneshot::channel().0),
            ));
            let mut t = turn(root, 5, &[1, 2], hold());
            t.disposition = TaskDisposition::Finish {
                deliver: None,
                execution: Some(ExecutionOutcome {
                    status: ExecutionStatus::Completed,
                    terminal_event: vec![3],
                }),
            };
            many.push(t);
        }
        group.push(commit_request(many));
        let (ok, results) = batched(&backend, group).await;
        assert!(ok, "the batched attempt failed");
        assert!(results.iter().all(|&r| r));
        assert_eq!(backend.inbox(p).await.unwrap().len(), 2);

        // A duplicate seq does need it.
        let group = vec![
            commit_request(vec![turn(r, 6, &[2], hold())]),
            commit_request(vec![turn(r, 6, &[2], hold())]),
        ];
        assert_eq!(batched(&backend, group).await, (false, vec![false, false]));
    }

    /// A run of turns that write only rows is fenced in SQL, its fence sent
    /// with what follows it: a lost lease there still fails the batched
    /// attempt, leaves nothing behind, and costs only its own request.
    #[tokio::test]
    async fn a_lease_lost_in_a_fence_checked_in_sql_fails_only_its_request() {
        let backend = SqliteBackend::in_memory().await.unwrap();
        backend.init_db().await.unwrap();
        let (a, b) = (execution(true), execution(true));
        backend.create_execution(a.clone()).await.unwrap();
        backend.create_execution(b.clone()).await.unwrap();
        let (ra, rb) = (a.root.invocation, b.root.invocation);
        let stale = TurnCommit {
            epoch: LeaseEpoch(7),
            ..turn(ra, 1, &[1], hold())
        };
        let group = vec![
            commit_request(vec![turn(rb, 1, &[1], hold())]),
            commit_request(vec![stale]),
        ];
        assert_eq!(batched(&backend, group).await, (false, vec![false, false]));
        assert!(backend.read_journal(rb, Seq(1)).await.unwrap().is_empty());

        let (tx_b, rx_b) = oneshot::channel();
        let (tx_a, rx_a) = oneshot::channel();
        let stale = TurnCommit {
            epoch: LeaseEpoch(7),
            ..turn(ra, 1, &[1], hold())
        };
        let mut group = vec![
            Request::Commit(vec![turn(rb, 1, &[1], hold())], Pending::new(tx_b)),
            Request::Commit(vec![stale], Pending::new(tx_a)),
        ];
        let mut writer = backend.inner.writer.lock().await;
        assert!(matches!(run_group(&mut writer, &mut group).await, Ok(true)));
        drop(writer);
        for request in group {
            request.answer(None);
        }
        rx_b.await.unwrap().expect("the other request commits");
        assert!(matches!(
            rx_a.await.unwrap(),
            Err(StoreError::LeaseLost { .. })
        ));
        assert_eq!(backend.read_journal(rb, Seq(1)).await.unwrap().len(), 1);
        assert!(backend.read_journal(ra, Seq(1)).await.unwrap().is_empty());
    }

    /// A turn that records an outcome is sent with its fence only as a root
    /// (the outcome's execution is then its own id, checked in SQL): a
    /// child recording one still records it on its own execution.
    #[tokio::test]
    async fn an_outcome_is_recorded_on_the_fenced_tasks_execution() {
        let backend = SqliteBackend::in_memory().await.unwrap();
        backend.init_db().await.unwrap();
        let parent = execution(true);
        backend.create_execution(parent.clone()).await.unwrap();
        let p = parent.root.invocation;
        let child = InvocationId::child_of(p, Seq(1));
        let mut spawn = turn(p, 1, &[1], hold());
        spawn.spawn = vec![invocation(child, parent.id, true)];
        backend.commit(vec![spawn]).await.unwrap();
        let ends = || TaskDisposition::Finish {
            deliver: None,
            execution: Some(ExecutionOutcome {
                status: ExecutionStatus::Completed,
                terminal_event: vec![9],
            }),
        };
        let group = vec![commit_request(vec![turn(child, 2, &[1], ends())])];
        assert_eq!(batched(&backend, group).await, (false, vec![false]));
        let status = |b: &SqliteBackend| {
            let b = b.clone();
            async move { b.execution(parent.id).await.unwrap().unwrap().status }
        };
        assert_eq!(status(&backend).await, ExecutionStatus::Running);

        backend
            .commit(vec![turn(child, 2, &[1], ends())])
            .await
            .expect("applied one by one");
        assert_eq!(status(&backend).await, ExecutionStatus::Completed);

        // The root's own end goes out with its fence.
        let group = vec![commit_request(vec![turn(p, 3, &[2], ends())])];
        assert_eq!(batched(&backend, group).await, (true, vec![true]));
    }

    /// A child created leased and ended in the same commit (an inline
    /// step) is written done at once, with its events, the same as
    /// inserting it and then applying its end.
    #[tokio::test]
    async fn a_child_created_and_ended_in_one_commit_is_written_done() {
        let backend = SqliteBackend::in_memory().await.unwrap();
        backend.init_db().await.unwrap();
        let parent = execution(true);
        backend.create_execution(parent.clone()).await.unwrap();
        let p = parent.root.invocation;
        let step = InvocationId::child_of(p, Seq(1));
        let mut schedule = turn(p, 1, &[1], hold());
        schedule.spawn = vec![invocation(step, parent.id, true)];
        let end = turn(
            step,
            2,
            &[1],
            TaskDisposition::Finish {
                deliver: None,
                execution: None,
            },
        );
        let group = vec![commit_request(vec![
            schedule,
            end,
            turn(p, 3, &[2], hold()),
        ])];
        assert_eq!(batched(&backend, group).await, (true, vec![true]));
        let task = backend.task(step).await.unwrap().expect("the step's task");
        assert_eq!(task.state, stent_journal::store::TaskState::Done);
        assert_eq!((task.lease_owner, task.lease_until), (None, None));
        assert_eq!((task.epoch, task.attempts), (LeaseEpoch(1), 0));
        let seqs: Vec<u32> = backend
            .read_journal(step, Seq(0))
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq.0)
            .collect();
        assert_eq!(seqs, [0, 1]);
        let parent_seqs = backend.read_journal(p, Seq(0)).await.unwrap().len();
        assert_eq!(parent_seqs, 3);
    }
}
