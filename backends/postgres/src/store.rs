//! The storage traits on PostgreSQL.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgRow};
use sqlx::{PgPool, Postgres, Row};
use stent_journal::plan::{Effect, conflict};
use stent_journal::rows::{self, Columns};
use stent_journal::sql::{self as sql_shared, Param, ParamKind};
use stent_journal::store::{
    ATTEMPT_FAILURES_KEPT, AttemptFailure, CacheStore, ClaimRequest, ClaimedTask, CleanupCounts,
    DatabaseError, DeadLetterRecord, DeadLetterStore, Delivery, ExecutionFilter, ExecutionOutcome,
    ExecutionRecord, ExecutionStatus, ExecutionStore, IdempotencyBegin, IdempotencyStore, InboxId,
    InboxItem, InspectStore, JournalRow, JournalStore, NewExecution, NewInvocation, QueueStats,
    SignalId, SignalRecord, SignalStore, StoreError, StoreResult, StoreStats, TaskDisposition,
    TaskFilter, TaskRecord, TaskState as StoredTaskState, TaskStore, TurnCommit, WorkerRecord,
};
use stent_journal::{
    CallKey, EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId,
};
use uuid::Uuid;

use crate::GroupCommitStats;
use crate::batch::{BatchCounts, Batcher, Unbatched};
use crate::held::Keeper;
use crate::{MAX_ATTEMPTS, PostgresBackend, shaped, sql};

// Operation names, for error messages.
const CREATE_EXECUTION: &str = "create_execution";
const CLAIM: &str = "claim";
const RENEW_LEASES: &str = "renew_leases";
const COMMIT: &str = "commit";
const SEND_SIGNAL: &str = "send_signal";
const BEGIN_IDEMPOTENT: &str = "begin_idempotent";
const END_EXECUTION: &str = "end_execution";
const CLEANUP: &str = "cleanup";
const REPLAY_DEAD_LETTER: &str = "replay_dead_letter";
const RESUME_EXECUTION: &str = "resume_execution";
const DISCARD_DEAD_LETTER: &str = "discard_dead_letter";

// ------------------------------------------------------------------ errors

/// Why a write attempt failed.
enum Fail {
    /// PostgreSQL aborted the transaction to break a deadlock or for a
    /// serialization failure; nothing of it was kept and it may run again.
    Retry(DatabaseError),
    /// Anything else, reported as is.
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

type Attempt<T> = Result<T, Fail>;

/// Whether PostgreSQL answered `e` with one of `states` (SQLSTATEs).
fn has_sqlstate(e: &sqlx::Error, states: &[&str]) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| states.contains(&code.as_ref()))
}

/// SQLSTATEs after which the whole transaction may simply run again:
/// `serialization_failure` and `deadlock_detected`.
fn is_retryable(e: &sqlx::Error) -> bool {
    has_sqlstate(e, &["40001", "40P01"])
}

/// Maps a sqlx error: retryable aborts to [`Fail::Retry`], everything else
/// to [`StoreError::Database`] naming the operation.
fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Fail {
    move |e| {
        if is_retryable(&e) {
            Fail::Retry(crate::error::typed(e).context(op))
        } else {
            Fail::Store(crate::error::database_error(op, e))
        }
    }
}

/// As [`db`], but a uniqueness violation is a [`StoreError::Conflict`]
/// described by `what` (given PostgreSQL's detail, which names the key).
fn unique(op: &'static str, what: impl FnOnce(&str) -> String) -> impl FnOnce(sqlx::Error) -> Fail {
    move |e| match e.as_database_error() {
        Some(d) if d.is_unique_violation() => {
            let detail = d
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(PgDatabaseError::detail)
                .unwrap_or_else(|| d.message());
            Fail::Store(StoreError::Conflict(what(detail)))
        }
        _ => db(op)(e),
    }
}

// ------------------------------------------------------------------ decoding

fn col<'r, T>(row: &'r PgRow, table: &str, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: {e}")))
}

fn invocation_col(row: &PgRow, table: &str, column: &str) -> StoreResult<InvocationId> {
    col::<Uuid>(row, table, column).map(InvocationId::from_uuid)
}

fn execution_col(row: &PgRow, table: &str, column: &str) -> StoreResult<ExecutionId> {
    col::<Uuid>(row, table, column).map(ExecutionId::from_uuid)
}

fn count(row: &PgRow, column: &str) -> StoreResult<u64> {
    let n: i64 = col(row, "count", column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A PostgreSQL row as [`Columns`]: ids are `UUID`, tags a `TEXT[]`, an
/// `INTEGER` an `i32`.
struct Cols<'r>(&'r PgRow);

impl Columns for Cols<'_> {
    fn text(&self, table: &str, column: &str) -> StoreResult<String> {
        col(self.0, table, column)
    }
    fn opt_text(&self, table: &str, column: &str) -> StoreResult<Option<String>> {
        col(self.0, table, column)
    }
    fn int(&self, table: &str, column: &str) -> StoreResult<i64> {
        col(self.0, table, column)
    }
    fn small_int(&self, table: &str, column: &str) -> StoreResult<i64> {
        col::<i32>(self.0, table, column).map(i64::from)
    }
    fn opt_int(&self, table: &str, column: &str) -> StoreResult<Option<i64>> {
        col(self.0, table, column)
    }
    fn bytes(&self, table: &str, column: &str) -> StoreResult<Vec<u8>> {
        col(self.0, table, column)
    }
    fn opt_bytes(&self, table: &str, column: &str) -> StoreResult<Option<Vec<u8>>> {
        col(self.0, table, column)
    }
    fn uuid(&self, table: &str, column: &str) -> StoreResult<Uuid> {
        col(self.0, table, column)
    }
    fn tags(&self, table: &str) -> StoreResult<Vec<String>> {
        col(self.0, table, "tags")
    }
}

fn execution_record(row: &PgRow) -> StoreResult<ExecutionRecord> {
    rows::execution_record(&Cols(row))
}

fn dead_letter_record(row: &PgRow) -> StoreResult<DeadLetterRecord> {
    rows::dead_letter_record(&Cols(row))
}

fn journal_row(row: &PgRow) -> StoreResult<JournalRow> {
    rows::journal_row(&Cols(row))
}

fn claimed_task(row: &PgRow) -> StoreResult<ClaimedTask> {
    rows::claimed_task(&Cols(row))
}

// ------------------------------------------------------------------ running writes

/// Runs `body` in a transaction on a pooled connection: commits if it
/// succeeds, rolls back if it fails. Evaluates to an [`Attempt`].
macro_rules! transaction {
    ($pool:expr, $op:expr, |$conn:ident| $body:expr) => {{
        // Boxed: sqlx's acquire is a future of about 13 KB that would
        // otherwise sit inline in every future that holds this one.
        let mut tx = Box::pin($pool.begin()).await.map_err(db($op))?;
        let outcome: Attempt<_> = {
            let $conn: &mut PgConnection = &mut tx;
            $body.await
        };
        match outcome {
            Ok(value) => {
                tx.commit().await.map_err(db($op))?;
                Ok(value)
            }
            Err(e) => {
                // If the rollback fails the connection is broken; the pool
                // discards it.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }};
}

/// Runs a write attempt (a statement or a transaction, made by `attempt`),
/// again if PostgreSQL aborted it for a deadlock or a serialization failure,
/// up to [`MAX_ATTEMPTS`] times.
async fn retrying<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Fail::Store(e)) => return Err(e),
            Err(Fail::Retry(error)) if tries >= MAX_ATTEMPTS => {
                return Err(StoreError::Database(
                    error.context(format_args!("gave up after {tries} attempts")),
                ));
            }
            Err(Fail::Retry(_)) => {
                // A short, growing pause lets the other transaction finish.
                tokio::time::sleep(Duration::from_millis(2 << tries)).await;
                tries += 1;
            }
        }
    }
}

/// Runs a transactional write on a task of its own, so that it always ends
/// with a `COMMIT` or a `ROLLBACK`, even if the caller stops waiting for it
/// (a timeout, a cancelled task). Dropping a sqlx transaction half-way is not
/// safe: a `BEGIN` cancelled before its reply leaves the server inside a
/// transaction that sqlx does not know about, and the pooled connection then
/// runs later statements in it, uncommitted, holding their locks. So a
/// caller that gives up gets nothing back, but the write commits or not as a
/// whole, as if the caller had waited.
///
/// The write starts when this is called, not when the result is first
/// polled, so the returned future holds only the task's handle (a write's
/// future can be kilobytes, copied whenever its holder is boxed).
fn detached<T, Fut>(op: &'static str, write: Fut) -> impl Future<Output = StoreResult<T>>
where
    T: Send + 'static,
    Fut: Future<Output = StoreResult<T>> + Send + 'static,
{
    let task = tokio::spawn(write);
    async move {
        task.await
            .map_err(|e| StoreError::database(format!("{op}: the write task failed: {e}")))?
    }
}

// ------------------------------------------------------------------ shared steps

/// What a new task row holds about its lease: state, owner, until, epoch,
/// attempts.
pub(crate) fn lease_columns(
    inv: &NewInvocation,
) -> (&'static str, Option<&str>, Option<i64>, i64, i32) {
    match &inv.lease {
        Some(grant) => (
            "leased",
            Some(grant.worker.as_str()),
            Some(grant.until.0),
            1,
            1,
        ),
        None => ("ready", None, None, 0, 0),
    }
}

/// The rows of spawned child invocations, one array per column, in the
/// order both `sql::SPAWN` and `stent_commit` take them.
#[derive(Default)]
struct SpawnColumns<'a> {
    ids: Vec<Uuid>,
    executions: Vec<Uuid>,
    functions: Vec<&'a str>,
    queues: Vec<&'a str>,
    priorities: Vec<i32>,
    tags: Vec<&'a str>,
    tag_first: Vec<i32>,
    tag_last: Vec<i32>,
    states: Vec<&'static str>,
    run_at: Vec<i64>,
    owners: Vec<Option<&'a str>>,
    untils: Vec<Option<i64>>,
    epochs: Vec<i64>,
    attempts: Vec<i32>,
    started: Vec<&'a [u8]>,
}

impl<'a> SpawnColumns<'a> {
    fn push(&mut self, child: &'a NewInvocation) -> Attempt<()> {
        let (state, owner, until, epoch, attempt) = lease_columns(child);
        self.ids.push(*child.invocation.as_uuid());
        self.executions.push(*child.execution.as_uuid());
        self.functions.push(child.function.as_str());
        self.queues.push(child.routing.queue.as_str());
        self.priorities.push(child.routing.priority);
        // 1-based, inclusive; an empty range for no tags.
        let first = self.tags.len() + 1;
        self.tags
            .extend(child.routing.tags.iter().map(String::as_str));
        self.tag_first.push(index_i32(first)?);
        self.tag_last.push(index_i32(self.tags.len())?);
        self.states.push(state);
        self.run_at.push(child.run_at.0);
        self.owners.push(owner);
        self.untils.push(until);
        self.epochs.push(epoch);
        self.attempts.push(attempt);
        self.started.push(child.started_event.as_slice());
        Ok(())
    }

    /// Binds the columns, in order, as the query's next parameters.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.executions)
            .bind(&self.functions)
            .bind(&self.queues)
            .bind(&self.priorities)
            .bind(&self.tags)
            .bind(&self.tag_first)
            .bind(&self.tag_last)
            .bind(&self.states)
            .bind(&self.run_at)
            .bind(&self.owners)
            .bind(&self.untils)
            .bind(&self.epochs)
            .bind(&self.attempts)
            .bind(&self.started)
    }
}

/// Inserts child tasks and their `Started` events, in creation order.
async fn spawn(conn: &mut PgConnection, children: &[NewInvocation], now: Timestamp) -> Attempt<()> {
    let mut columns = SpawnColumns::default();
    for child in children {
        columns.push(child)?;
    }
    columns
        .bind(sqlx::query(sql::SPAWN).bind(now.0))
        .execute(&mut *conn)
        .await
        .map_err(unique(COMMIT, |detail| {
            format!("a spawned invocation already exists ({detail})")
        }))?;
    Ok(())
}

fn index_i32(i: usize) -> Attempt<i32> {
    i32::try_from(i).map_err(|_| {
        Fail::Store(StoreError::database(format!(
            "{COMMIT}: too many tags in one commit ({i})"
        )))
    })
}

async fn apply_turn(conn: &mut PgConnection, turn: &TurnCommit) -> Attempt<()> {
    const OP: &str = COMMIT;
    let inv = *turn.invocation.as_uuid();
    let now = turn.now.0;

    // 1 + 2: the disposition update is also the fence, and the events are
    // appended in the same statement only if it matched. Nothing else in the
    // turn can change the task's lease or wake flag, so applying the
    // disposition first is equivalent to applying it last.
    let seqs: Vec<i64> = turn.events.iter().map(|e| i64::from(e.seq.0)).collect();
    let kinds: Vec<&str> = turn.events.iter().map(|e| e.kind.as_str()).collect();
    let keys: Vec<Option<&[u8]>> = turn
        .events
        .iter()
        .map(|e| e.call_key.as_ref().map(|k| k.0.as_slice()))
        .collect();
    let payloads: Vec<&[u8]> = turn.events.iter().map(|e| e.bytes.as_slice()).collect();
    let fenced = |statement: &'static str| {
        sqlx::query(statement)
            .bind(inv)
            .bind(turn.epoch.0)
            .bind(now)
            .bind(&seqs)
            .bind(&kinds)
            .bind(&keys)
            .bind(&payloads)
    };
    let query = match &turn.disposition {
        TaskDisposition::Hold { lease_until } => fenced(sql::HOLD).bind(lease_until.0),
        TaskDisposition::Park { run_at } => fenced(sql::PARK).bind(run_at.map(|t| t.0)),
        TaskDisposition::Finish { .. } => fenced(sql::RELEASE).bind("done"),
        TaskDisposition::Pause { .. } => fenced(sql::RELEASE).bind("paused"),
        TaskDisposition::Retry { run_at, error } => fenced(sql::RETRY)
            .bind(run_at.0)
            .bind(error.as_str())
            .bind(i64::from(ATTEMPT_FAILURES_KEPT)),
        TaskDisposition::DeadLetter { .. } => fenced(sql::RELEASE).bind("dead"),
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await
        .map_err(unique(OP, |detail| {
            format!(
                "journal of invocation {} already has an event at one of seqs {:?} ({detail})",
                turn.invocation, seqs
            )
        }))?;
    let Some(row) = row else {
        return Err(Fail::Store(StoreError::LeaseLost {
            invocation: turn.invocation,
            epoch: turn.epoch,
        }));
    };
    let execution = execution_col(&row, "tasks", "execution_id")?;
    let execution_uuid = *execution.as_uuid();

    for effect in turn.plan() {
        match effect {
            // Written above, in the fenced statement (a retry's failure too).
            Effect::Fence | Effect::Events(_) | Effect::RecordFailure(_) => {}
            Effect::Spawn(children) => spawn(conn, children, turn.now).await?,
            Effect::ConsumeInbox(ids) => {
                let numbers: Vec<i64> = ids.iter().map(|i| i.0).collect();
                let done = sqlx::query(sql::CONSUME_INBOX)
                    .bind(inv)
                    .bind(&numbers)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
                if done.rows_affected() != ids.len() as u64 {
                    return Err(Fail::Store(conflict::inbox_missing(turn.invocation, ids)));
                }
            }
            Effect::ConsumeSignals(ids) => {
                let numbers: Vec<i64> = ids.iter().map(|s| s.0).collect();
                let done = sqlx::query(sql::CONSUME_SIGNALS)
                    .bind(inv)
                    .bind(execution_uuid)
                    .bind(&numbers)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
                if done.rows_affected() != ids.len() as u64 {
                    return Err(Fail::Store(conflict::signals_missing(execution, ids)));
                }
            }
            Effect::CachePut(entries) => {
                let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.0.as_slice()).collect();
                let values: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_slice()).collect();
                sqlx::query(sql::CACHE_PUT)
                    .bind(&keys)
                    .bind(&values)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
            }
            Effect::IdempotencyDone(keys) => {
                for (key, value) in keys {
                    let done = sqlx::query(sql::IDEMPOTENCY_DONE)
                        .bind(key.as_str())
                        .bind(inv)
                        .bind(value.as_slice())
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                    if done.rows_affected() != 1 {
                        return Err(Fail::Store(conflict::idempotency_not_held(
                            key,
                            turn.invocation,
                        )));
                    }
                }
            }
            Effect::IdempotencyRelease(keys) => {
                for key in keys {
                    sqlx::query(sql::IDEMPOTENCY_RELEASE)
                        .bind(key.as_str())
                        .bind(inv)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                }
            }
            Effect::Deliver(d) => deliver(conn, d, turn.now, OP).await?,
            Effect::FinishExecution(outcome) => {
                finish_execution(conn, execution, outcome, turn.now, OP).await?
            }
            Effect::PauseExecution(report) => {
                sqlx::query(sql::PAUSE_EXECUTION)
                    .bind(execution_uuid)
                    .bind(report)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
            }
            Effect::DeadLetter(reason) => {
                const T: &str = "tasks";
                let function: String = col(&row, T, "function")?;
                let queue: String = col(&row, T, "queue")?;
                let retries: i32 = col(&row, T, "retries")?;
                sqlx::query(sql::INSERT_DEAD_LETTER)
                    .bind(inv)
                    .bind(execution_uuid)
                    .bind(function)
                    .bind(queue)
                    .bind(reason)
                    .bind(retries)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(unique(OP, |_| {
                        format!("invocation {} already has a dead letter", turn.invocation)
                    }))?;
            }
        }
    }
    Ok(())
}

/// Puts a finished child's result in its parent's inbox and wakes the
/// parent.
async fn deliver(
    conn: &mut PgConnection,
    d: &Delivery,
    now: Timestamp,
    op: &'static str,
) -> Attempt<()> {
    sqlx::query(sql::DELIVER)
        .bind(*d.parent.as_uuid())
        .bind(d.event.as_slice())
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

/// Records how `execution` ended.
async fn finish_execution(
    conn: &mut PgConnection,
    execution: ExecutionId,
    outcome: &ExecutionOutcome,
    now: Timestamp,
    op: &'static str,
) -> Attempt<()> {
    sqlx::query(sql::FINISH_EXECUTION)
        .bind(*execution.as_uuid())
        .bind(outcome.status.as_str())
        .bind(outcome.terminal_event.as_slice())
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

/// Whether all a turn writes is its fenced disposition update and events
/// (the common turn: a step recorded, the lease held or the task parked).
fn is_one_statement(turn: &TurnCommit) -> bool {
    turn.plan().all(|effect| {
        matches!(
            effect,
            Effect::Fence | Effect::Events(_) | Effect::RecordFailure(_)
        )
    })
}

/// The SQLSTATEs `stent_commit` raises: a lost lease and missing inbox
/// items, each with the 0-based index of the turn as the detail.
const LEASE_LOST_STATE: &str = "SL001";
const INBOX_MISSING_STATE: &str = "SL002";

/// Applies `turns` with one call of a commit function: one statement, one
/// round trip, atomic on its own. The functions take plain turns only
/// ([`TurnCommit::is_plain`]): they hold, park or finish tasks and write
/// no signals, cache or idempotency keys. (A retry records its failure,
/// which they do not take: it goes by its own statement.)
///
/// Independent turns ([`LockOrder::independent`]) go to `stent_commit_set`,
/// which writes each kind of row for all of them at once, after locking
/// every row they update in id order; others to `stent_commit`, which
/// applies them one after the other, in the order `plan` gives.
async fn commit_by_function(
    keeper: &Arc<Keeper>,
    turns: &[TurnCommit],
    plan: &LockOrder,
) -> Attempt<()> {
    let n = turns.len();
    let (mut t_inv, mut t_epoch, mut t_now) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut t_kind, mut t_arg) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut t_status, mut t_terminal) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut t_parent, mut t_delivery) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut e_turn, mut e_seq, mut e_kind, mut e_key, mut e_payload) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut i_turn, mut i_id) = (Vec::new(), Vec::new());
    let mut s_turn = Vec::new();
    let mut spawned = SpawnColumns::default();
    for (index, turn) in plan.order.iter().map(|&i| &turns[i]).enumerate() {
        let k = index_i32(index + 1)?;
        t_inv.push(*turn.invocation.as_uuid());
        t_epoch.push(turn.epoch.0);
        t_now.push(turn.now.0);
        let (kind, arg) = match &turn.disposition {
            TaskDisposition::Hold { lease_until } => ("hold", Some(lease_until.0)),
            TaskDisposition::Park { run_at } => ("park", run_at.map(|t| t.0)),
            TaskDisposition::Retry { run_at, .. } => ("retry", Some(run_at.0)),
            _ => ("done", None),
        };
        t_kind.push(kind);
        t_arg.push(arg);
        let (deliver, outcome) = match &turn.disposition {
            TaskDisposition::Finish { deliver, execution } => {
                (deliver.as_ref(), execution.as_ref())
            }
            _ => (None, None),
        };
        t_parent.push(deliver.map(|d| *d.parent.as_uuid()));
        t_delivery.push(deliver.map(|d| d.event.as_slice()));
        t_status.push(outcome.map(|o| o.status.as_str()));
        t_terminal.push(outcome.map(|o| o.terminal_event.as_slice()));
        for e in &turn.events {
            e_turn.push(k);
            e_seq.push(i64::from(e.seq.0));
            e_kind.push(e.kind.as_str());
            e_key.push(e.call_key.as_ref().map(|c| c.0.as_slice()));
            e_payload.push(e.bytes.as_slice());
        }
        for item in &turn.consumed_inbox {
            i_turn.push(k);
            i_id.push(item.0);
        }
        for child in &turn.spawn {
            s_turn.push(k);
            spawned.push(child)?;
        }
    }
    let call = |statement, lock| {
        let query = sqlx::query(statement)
            .bind(&t_inv)
            .bind(&t_epoch)
            .bind(&t_now)
            .bind(&t_kind)
            .bind(&t_arg)
            .bind(&t_status)
            .bind(&t_terminal)
            .bind(&t_parent)
            .bind(&t_delivery)
            .bind(&e_turn)
            .bind(&e_seq)
            .bind(&e_kind)
            .bind(&e_key)
            .bind(&e_payload)
            .bind(&i_turn)
            .bind(&i_id)
            .bind(&s_turn);
        keeper.execute(spawned.bind(query).bind(lock))
    };
    let mut result = if plan.independent {
        call(sql::COMMIT_SET_FUNCTION, &plan.rows).await
    } else {
        call(sql::COMMIT_FUNCTION, &plan.lock).await
    };
    if plan.independent
        && let Err(e) = &result
        // undefined_function
        && has_sqlstate(e, &["42883"])
    {
        // A schema from before migration 9 (a process of this build ran
        // before anyone ran `init_db`): the turn-by-turn function writes
        // the same rows. The failed statement changed nothing.
        warn_set_commit_missing();
        result = call(sql::COMMIT_FUNCTION, &plan.lock).await;
    }
    result
        .map(|_| ())
        .map_err(|e| commit_failure(e, &plan.order, turns))
}

/// Says once per process that commits fall back to `stent_commit`.
fn warn_set_commit_missing() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "the PostgreSQL schema has no stent_commit_set (it is older than this build's \
             version {}): commits of many turns go turn by turn until `init_db` upgrades it",
            crate::SCHEMA_VERSION
        );
    }
}

/// Applies `turns`, which [`shaped::fits`] accepted, in `order` (their
/// rows' id order) with one statement generated for their shape.
async fn commit_shaped(keeper: &Arc<Keeper>, turns: &[TurnCommit], order: &[usize]) -> Attempt<()> {
    shaped::run(keeper, turns, order)
        .await
        .map_err(|e| commit_failure(e, order, turns))
}

/// A commit statement's error in the store's terms: the lost lease or
/// missing inbox items that `stent_commit` or a generated statement raised
/// (naming the turn by its index in `order`, the order it applied them
/// in), a conflict, or a database error.
fn commit_failure(e: sqlx::Error, order: &[usize], turns: &[TurnCommit]) -> Fail {
    const OP: &str = COMMIT;
    // Which turn failed, from the detail of the statement's own errors.
    let raised = e.as_database_error().and_then(|d| {
        let pg = d.try_downcast_ref::<PgDatabaseError>()?;
        let turn = pg
            .detail()?
            .parse::<usize>()
            .ok()
            .and_then(|i| order.get(i))
            .and_then(|&i| turns.get(i))?;
        Some((pg.code().to_string(), turn))
    });
    match raised {
        Some((code, turn)) if code == LEASE_LOST_STATE => Fail::Store(StoreError::LeaseLost {
            invocation: turn.invocation,
            epoch: turn.epoch,
        }),
        Some((code, turn)) if code == INBOX_MISSING_STATE => Fail::Store(conflict::inbox_missing(
            turn.invocation,
            &turn.consumed_inbox,
        )),
        _ => unique(OP, |detail| {
            format!("a journal event or a spawned invocation already exists ({detail})")
        })(e),
    }
}

/// Locks the task rows `ids` in invocation id order, the one order every
/// transaction that updates several task rows takes them in (migration 4),
/// so no two of them wait for each other in a cycle. One row (or none)
/// needs no lock taken ahead.
async fn lock_rows(conn: &mut PgConnection, ids: &[Uuid], op: &'static str) -> Attempt<()> {
    if ids.len() > 1 {
        sqlx::query(sql::LOCK_TASKS)
            .bind(ids)
            .execute(&mut *conn)
            .await
            .map_err(db(op))?;
    }
    Ok(())
}

/// The order a batch of turns is applied in, and the rows to lock before
/// it, so that its transaction takes the task rows it updates in
/// invocation id order, the one order of every transaction that updates
/// several task rows (migration 4), and two of them never wait for each
/// other in a cycle.
///
/// Turns of rows that exist already come first, by invocation id (turns of
/// one invocation keep their order); turns of rows the batch creates follow
/// in their own order (after the turn that creates them; no other
/// transaction can hold such a row). A batch where order is visible keeps
/// its order: two turns delivering to one parent (its inbox's order), a
/// delivery and its parent's own turn (a wake before the parent parks), two
/// turns ending executions (the last outcome stands). Applied in that order, a turn locks its
/// row and then the parent its delivery wakes. If that sequence of existing
/// rows is already in id order, no lock is taken ahead (the common case:
/// a workflow's turn and the inline step it stores); otherwise every
/// existing row is locked first, in id order (`lock`).
struct LockOrder {
    /// Indices into the turns, in the order to apply them.
    order: Vec<usize>,
    /// The rows to lock first, in id order; empty when the order suffices.
    lock: Vec<Uuid>,
    /// Every existing row the turns update (their own and the parents they
    /// wake), in id order: the rows a set-based write locks first, since
    /// it reaches them in no order of its own.
    rows: Vec<Uuid>,
    /// No two turns are of one invocation, and none delivers to another's
    /// invocation: the turns' own rows can be written as one set, and the
    /// deliveries after them.
    independent: bool,
}

impl LockOrder {
    fn of(turns: &[TurnCommit]) -> LockOrder {
        let created: HashSet<InvocationId> = turns
            .iter()
            .flat_map(|t| t.spawn.iter().map(|s| s.invocation))
            .collect();
        let parent = |t: &TurnCommit| match &t.disposition {
            TaskDisposition::Finish {
                deliver: Some(d), ..
            } => Some(d.parent),
            _ => None,
        };
        // Turns that deliver to the same parent, or end the same execution,
        // keep their order: it is the order of the parent's inbox, and the
        // last outcome stands.
        // (A turn does not know its execution: at most one outcome, then.)
        let mut parents = HashSet::new();
        let outcomes = turns
            .iter()
            .filter(|t| {
                matches!(
                    t.disposition,
                    TaskDisposition::Finish {
                        execution: Some(_),
                        ..
                    }
                )
            })
            .count();
        // A delivery and its parent's own turn keep their order too (a
        // wake before the parent parks makes it ready at the parent's time).
        let own: HashSet<InvocationId> = turns.iter().map(|t| t.invocation).collect();
        let reorderable = outcomes <= 1
            && turns
                .iter()
                .all(|t| parent(t).is_none_or(|p| !own.contains(&p) && parents.insert(p)));
        let order: Vec<usize> = if reorderable {
            let (mut order, later): (Vec<usize>, Vec<usize>) =
                (0..turns.len()).partition(|&i| !created.contains(&turns[i].invocation));
            order.sort_by_key(|&i| *turns[i].invocation.as_uuid());
            order.extend(later);
            order
        } else {
            (0..turns.len()).collect()
        };
        let reached: Vec<Uuid> = order
            .iter()
            .flat_map(|&i| std::iter::once(turns[i].invocation).chain(parent(&turns[i])))
            .filter(|i| !created.contains(i))
            .map(|i| *i.as_uuid())
            .collect();
        let in_order = reached.windows(2).all(|w| w[0] <= w[1]);
        let mut rows = reached;
        rows.sort_unstable();
        rows.dedup();
        let lock = if in_order { Vec::new() } else { rows.clone() };
        LockOrder {
            order,
            lock,
            rows,
            independent: own.len() == turns.len()
                && turns
                    .iter()
                    .all(|t| parent(t).is_none_or(|p| !own.contains(&p))),
        }
    }
}

/// The turns of one `commit` call, each fenced by its epoch; the first
/// failure fails (and, with the transaction, undoes) them all.
async fn commit_in(conn: &mut PgConnection, turns: &[TurnCommit]) -> Attempt<()> {
    let plan = LockOrder::of(turns);
    lock_rows(conn, &plan.lock, COMMIT).await?;
    for i in plan.order {
        apply_turn(conn, &turns[i]).await?;
    }
    Ok(())
}

/// The turns of one `commit` call, as one statement when they allow it.
async fn commit_one(keeper: &Arc<Keeper>, turns: &[TurnCommit]) -> StoreResult<()> {
    if let [turn] = turns
        && is_one_statement(turn)
    {
        // The fenced update with its events is the whole turn: one
        // statement, atomic on its own, no transaction needed.
        return retrying(|| async move {
            let mut held = keeper.take().await.map_err(db(COMMIT))?;
            let result = apply_turn(held.conn(), turn).await;
            // A lost lease, a conflict or a deadlock is the server's answer;
            // a database error may be the connection's, which is then not
            // used again.
            held.done(!matches!(result, Err(Fail::Store(StoreError::Database(_)))));
            result
        })
        .await;
    }
    if !turns.iter().all(TurnCommit::is_plain) {
        let pool = keeper.pool();
        return retrying(
            || async move { transaction!(pool, COMMIT, |conn| commit_in(conn, turns)) },
        )
        .await;
    }
    let plan = LockOrder::of(turns);
    if shaped::fits(turns) && plan.lock.is_empty() {
        // One statement generated for the commit's shape, when the turns'
        // rows are reached in id order without locking them first (always,
        // for two turns that deliver nothing).
        return retrying(|| commit_shaped(keeper, turns, &plan.order)).await;
    }
    // Fences, events, spawns, inbox and deliveries of every turn in one
    // statement: one round trip instead of one per write plus BEGIN and
    // COMMIT.
    retrying(|| commit_by_function(keeper, turns, &plan)).await
}

// ------------------------------------------------------------------ claims

/// Claim order of a task: priority (highest first), `run_at`, creation.
type ClaimOrder = (Reverse<i32>, i64, i64);

/// A claim with concurrency limits, inside its transaction.
///
/// A function limited to `n` has `n - live leases` free slots; only its first
/// that many candidates can be claimed (later ones would find the slots taken
/// by earlier ones of the same batch). So the claim takes the first
/// `req.limit` of: the candidates of the unlimited functions, and the first
/// free-slots candidates of each limited function. The advisory lock per
/// limited function, held until the transaction ends, makes the count and
/// the claim one step for other claimers of that function.
async fn claim_limited(conn: &mut PgConnection, req: &ClaimRequest) -> Attempt<Vec<ClaimedTask>> {
    const OP: &str = CLAIM;
    let limit_of = |f: &String| {
        req.concurrency_limits
            .iter()
            .filter(|(g, _)| g == f)
            .map(|(_, n)| *n)
            .min()
    };
    let mut limited: Vec<&String> = req
        .functions
        .iter()
        .filter(|f| limit_of(f).is_some())
        .collect();
    limited.sort();
    limited.dedup();
    let unlimited: Vec<&str> = req
        .functions
        .iter()
        .filter(|f| limit_of(f).is_none())
        .map(String::as_str)
        .collect();

    // In name order, so that two claimers never wait for each other's locks.
    for function in &limited {
        sqlx::query(sql::LOCK_FUNCTION)
            .bind(sql::LIMIT_LOCK_CLASS)
            .bind(function.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
    }
    // A new statement, so a new snapshot: it sees every lease committed by
    // the claimers that held the locks before.
    let names: Vec<&str> = limited.iter().map(|f| f.as_str()).collect();
    let active = sqlx::query(sql::ACTIVE_LEASES)
        .bind(req.now.0)
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OP))?;
    let mut live = HashMap::new();
    for row in &active {
        let function: String = col(row, "tasks", "function")?;
        let n: i64 = col(row, "tasks", "n")?;
        live.insert(function, n);
    }

    let mut picks: Vec<(ClaimOrder, Uuid)> = Vec::new();
    for function in limited {
        let cap = i64::from(limit_of(function).unwrap_or(0));
        let free = cap - live.get(function.as_str()).copied().unwrap_or(0);
        if free > 0 {
            let free = free.min(sql_shared::as_i64(req.limit));
            candidates(conn, req, &[function.as_str()], free, &mut picks).await?;
        }
    }
    if !unlimited.is_empty() {
        candidates(
            conn,
            req,
            &unlimited,
            sql_shared::as_i64(req.limit),
            &mut picks,
        )
        .await?;
    }
    picks.sort();
    picks.truncate(req.limit);
    if picks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = picks.into_iter().map(|(_, id)| id).collect();
    let rows = sqlx::query(sql::CLAIM_IDS)
        .bind(req.now.0)
        .bind(&ids)
        .bind(req.worker.as_str())
        .bind(req.lease_until.0)
        .bind(req.code_version.as_deref())
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OP))?;
    Ok(rows.iter().map(claimed_task).collect::<StoreResult<_>>()?)
}

/// Adds the first `limit` claimable tasks of `functions` to `picks`, locking them.
async fn candidates(
    conn: &mut PgConnection,
    req: &ClaimRequest,
    functions: &[&str],
    limit: i64,
    picks: &mut Vec<(ClaimOrder, Uuid)>,
) -> Attempt<()> {
    const T: &str = "tasks";
    let rows = sqlx::query(sql::CANDIDATES)
        .bind(req.now.0)
        .bind(functions)
        .bind(req.queues.as_deref())
        .bind(req.tags.as_deref())
        .bind(limit)
        .bind(req.versions())
        .fetch_all(&mut *conn)
        .await
        .map_err(db(CLAIM))?;
    for row in &rows {
        let order = (
            Reverse(col(row, T, "priority")?),
            col(row, T, "run_at")?,
            col(row, T, "created")?,
        );
        picks.push((order, col(row, T, "invocation_id")?));
    }
    Ok(())
}

// ------------------------------------------------------------------ other writes

/// Takes an idempotency key for `owner` if it is free, or reports its state.
async fn begin_idempotent_once(
    pool: &PgPool,
    key: &str,
    owner: InvocationId,
) -> Attempt<Option<IdempotencyBegin>> {
    const OP: &str = BEGIN_IDEMPOTENT;
    const T: &str = "idempotency";
    let owner_uuid = *owner.as_uuid();
    let taken = sqlx::query(sql::IDEMPOTENCY_TAKE)
        .bind(key)
        .bind(owner_uuid)
        .fetch_optional(pool)
        .await
        .map_err(db(OP))?;
    if taken.is_some() {
        return Ok(Some(IdempotencyBegin::Owner));
    }
    // A new statement, so it sees the row the conflicting insert found.
    let Some(row) = sqlx::query(sql::IDEMPOTENCY_GET)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(db(OP))?
    else {
        // Released in between: try to take it again.
        return Ok(None);
    };
    let state: String = col(&row, T, "state")?;
    match state.as_str() {
        "done" => {
            let value: Option<Vec<u8>> = col(&row, T, "value")?;
            Ok(Some(IdempotencyBegin::Done(value.unwrap_or_default())))
        }
        "running" => {
            let holder = invocation_col(&row, T, "owner")?;
            if holder == owner {
                Ok(Some(IdempotencyBegin::Owner))
            } else {
                Ok(Some(IdempotencyBegin::Running { owner: holder }))
            }
        }
        other => Err(Fail::Store(StoreError::Corrupt(format!(
            "idempotency.state holds unknown state {other:?}"
        )))),
    }
}

/// Ends a non-terminal execution and cancels its unfinished tasks.
async fn end_execution_in(
    conn: &mut PgConnection,
    id: ExecutionId,
    status: ExecutionStatus,
    terminal_event: &[u8],
    now: Timestamp,
) -> Attempt<bool> {
    const OP: &str = END_EXECUTION;
    let uuid = *id.as_uuid();
    // Tasks before the execution, as a root's final commit takes them.
    sqlx::query(sql::LOCK_EXECUTION_TASKS)
        .bind(uuid)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    let row = sqlx::query(sql::LOCK_EXECUTION)
        .bind(uuid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(OP))?
        .ok_or_else(|| StoreError::NotFound(format!("execution {id}")))?;
    let current = rows::execution_status(&Cols(&row))?;
    if current.is_terminal() {
        return Ok(false);
    }
    let kind = status.terminal_kind().unwrap_or(EventKind::Cancelled);
    sqlx::query(sql::END_EXECUTION)
        .bind(uuid)
        .bind(status.as_str())
        .bind(terminal_event)
        .bind(now.0)
        .bind(*id.root_invocation().as_uuid())
        .bind(kind.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    Ok(true)
}

/// Resumes a paused execution and makes its paused tasks runnable.
async fn resume_execution_in(
    conn: &mut PgConnection,
    id: ExecutionId,
    now: Timestamp,
) -> Attempt<bool> {
    const OP: &str = RESUME_EXECUTION;
    let uuid = *id.as_uuid();
    sqlx::query(sql::LOCK_EXECUTION_TASKS)
        .bind(uuid)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    sqlx::query(sql::LOCK_EXECUTION)
        .bind(uuid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(OP))?
        .ok_or_else(|| StoreError::NotFound(format!("execution {id}")))?;
    let resumed = sqlx::query(sql::RESUME_EXECUTION)
        .bind(uuid)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    if resumed.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(sql::RESUME_TASKS)
        .bind(uuid)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    Ok(true)
}

/// Removes a dead letter: its execution, or `None` if there was none.
async fn take_dead_letter(
    conn: &mut PgConnection,
    task: InvocationId,
    op: &'static str,
) -> Attempt<Option<ExecutionId>> {
    let row = sqlx::query(sql::DELETE_DEAD_LETTER)
        .bind(*task.as_uuid())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(row
        .map(|r| execution_col(&r, "dead_letters", "execution_id"))
        .transpose()?)
}

/// Makes a dead-lettered task runnable again.
async fn replay_dead_letter_in(
    conn: &mut PgConnection,
    task: InvocationId,
    queue: Option<&str>,
    reset_retries: bool,
    now: Timestamp,
) -> Attempt<bool> {
    const OP: &str = REPLAY_DEAD_LETTER;
    let Some(execution) = take_dead_letter(conn, task, OP).await? else {
        return Ok(false);
    };
    let replayed = sqlx::query(sql::REPLAY_TASK)
        .bind(*task.as_uuid())
        .bind(now.0)
        .bind(reset_retries)
        .bind(queue)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    if let Some(queue) = queue
        && replayed.rows_affected() == 1
        && task == execution.root_invocation()
    {
        sqlx::query(sql::SET_EXECUTION_QUEUE)
            .bind(*execution.as_uuid())
            .bind(queue)
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
    }
    Ok(true)
}

/// Ends a dead-lettered task as a finishing one would.
async fn discard_dead_letter_in(
    conn: &mut PgConnection,
    task: InvocationId,
    deliver: Option<&Delivery>,
    outcome: Option<&ExecutionOutcome>,
    now: Timestamp,
) -> Attempt<bool> {
    const OP: &str = DISCARD_DEAD_LETTER;
    let rows: Vec<Uuid> = std::iter::once(task)
        .chain(deliver.map(|d| d.parent))
        .map(|i| *i.as_uuid())
        .collect();
    lock_rows(conn, &rows, OP).await?;
    let Some(execution) = take_dead_letter(conn, task, OP).await? else {
        return Ok(false);
    };
    sqlx::query(sql::DISCARD_TASK)
        .bind(*task.as_uuid())
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    if let Some(d) = deliver {
        self::deliver(conn, d, now, OP).await?;
    }
    if let Some(o) = outcome {
        finish_execution(conn, execution, o, now, OP).await?;
    }
    Ok(true)
}

fn cleanup_counts(row: &PgRow) -> StoreResult<CleanupCounts> {
    Ok(CleanupCounts {
        executions: count(row, "executions")?,
        tasks: count(row, "tasks")?,
        events: count(row, "events")?,
    })
}

// ------------------------------------------------------------------ traits

#[async_trait]
impl JournalStore for PostgresBackend {
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>> {
        const OP: &str = "read_journal";
        let rows = sqlx::query(sql::READ_JOURNAL)
            .bind(*invocation.as_uuid())
            .bind(i64::from(from.0))
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter().map(journal_row).collect()
    }

    /// Every journal row of every invocation of `execution` (only those of
    /// `kinds`, if given), grouped by invocation in task creation order, each
    /// in seq order. Invocations without a matching row are left out.
    async fn read_execution_journal(
        &self,
        execution: ExecutionId,
        kinds: Option<&[EventKind]>,
    ) -> StoreResult<Vec<(InvocationId, Vec<JournalRow>)>> {
        const OP: &str = "read_execution_journal";
        let kinds: Option<Vec<&str>> = kinds.map(|ks| ks.iter().map(|k| k.as_str()).collect());
        let order: Vec<Uuid> = sqlx::query_scalar(sql::READ_EXECUTION_TASKS)
            .bind(*execution.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::READ_JOURNALS_OF_KINDS)
            .bind(&order)
            .bind(kinds)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        let mut by_invocation: HashMap<InvocationId, Vec<JournalRow>> = HashMap::new();
        for row in &rows {
            let invocation = invocation_col(row, "journal", "invocation_id")?;
            by_invocation
                .entry(invocation)
                .or_default()
                .push(journal_row(row)?);
        }
        // In task creation order; invocations without a matching row left out.
        Ok(order
            .into_iter()
            .filter_map(|id| {
                let id = InvocationId::from_uuid(id);
                by_invocation.remove(&id).map(|rows| (id, rows))
            })
            .collect())
    }
}

/// The whole journals of `ids`, by invocation (invocations without rows are
/// left out).
async fn read_journals(
    pool: &PgPool,
    ids: &[Uuid],
) -> StoreResult<HashMap<InvocationId, Vec<JournalRow>>> {
    let rows = sqlx::query(sql::READ_JOURNALS)
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(read_err("read_journal"))?;
    let mut out: HashMap<InvocationId, Vec<JournalRow>> = HashMap::new();
    for row in &rows {
        let invocation = invocation_col(row, "journal", "invocation_id")?;
        out.entry(invocation).or_default().push(journal_row(row)?);
    }
    Ok(out)
}

/// Maps a read's sqlx error to [`StoreError::Database`] naming the operation.
fn read_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| crate::error::database_error(op, e)
}

#[async_trait]
impl ExecutionStore for PostgresBackend {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        let execution = if self.batches.enabled {
            let keeper = self.keeper.clone();
            let batcher = self.batches.creates.get_or_init(|| {
                Batcher::start(self.batches.slots, MAX_BATCH, move |batch| {
                    create_batch(keeper.clone(), batch)
                })
            });
            match batcher.call(execution).await {
                Ok(outcome) => return outcome,
                Err(Unbatched::Lost) => return Err(batch_lost(CREATE_EXECUTION)),
                Err(Unbatched::Gone(execution)) => execution,
            }
        } else {
            execution
        };
        create_one(&self.keeper, &execution).await
    }

    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        if self.batches.enabled {
            let pool = self.pool.clone();
            let batcher = self.batches.reads.get_or_init(|| {
                Batcher::start(self.batches.slots, MAX_BATCH, move |batch| {
                    read_batch(pool.clone(), batch)
                })
            });
            match batcher.call(id).await {
                Ok(outcome) => return outcome,
                Err(Unbatched::Lost) => return Err(batch_lost(READ_EXECUTION)),
                Err(Unbatched::Gone(_)) => {}
            }
        }
        read_one(&self.pool, id).await
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        list_filtered(&self.pool, &filter).await
    }

    async fn queue_depth(&self, queue: Option<&str>, _now: Timestamp) -> StoreResult<u64> {
        const OP: &str = "queue_depth";
        let query = match queue {
            Some(q) => sqlx::query_scalar(sql::QUEUE_DEPTH).bind(q),
            None => sqlx::query_scalar(sql::QUEUE_DEPTH_ALL),
        };
        let n: i64 = query.fetch_one(&self.pool).await.map_err(read_err(OP))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let pool = self.pool.clone();
        detached(END_EXECUTION, async move {
            let (pool, event) = (&pool, terminal_event.as_slice());
            retrying(|| async move {
                transaction!(pool, END_EXECUTION, |conn| end_execution_in(
                    conn, id, status, event, now
                ))
            })
            .await
        })
        .await
    }

    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        let pool = self.pool.clone();
        detached(RESUME_EXECUTION, async move {
            let pool = &pool;
            retrying(|| async move {
                transaction!(pool, RESUME_EXECUTION, |conn| resume_execution_in(
                    conn, id, now
                ))
            })
            .await
        })
        .await
    }

    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts> {
        if dry_run {
            let row = sqlx::query(sql::COUNT_OLD)
                .bind(before.0)
                .fetch_one(&self.pool)
                .await
                .map_err(read_err(CLEANUP))?;
            return cleanup_counts(&row);
        }
        let pool = &self.pool;
        retrying(|| async move {
            let row = sqlx::query(sql::DELETE_OLD)
                .bind(before.0)
                .fetch_one(pool)
                .await
                .map_err(db(CLEANUP))?;
            Ok(cleanup_counts(&row)?)
        })
        .await
    }
}

#[async_trait]
impl DeadLetterStore for PostgresBackend {
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>> {
        const OP: &str = "list_dead_letters";
        let rows = sqlx::query(sql::LIST_DEAD_LETTERS)
            .bind(sql_shared::as_i64(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter().map(dead_letter_record).collect()
    }

    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>> {
        const OP: &str = "get_dead_letter";
        let row = sqlx::query(sql::DEAD_LETTER)
            .bind(*task.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(read_err(OP))?;
        row.as_ref().map(dead_letter_record).transpose()
    }

    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let pool = self.pool.clone();
        let queue = queue.map(str::to_owned);
        detached(REPLAY_DEAD_LETTER, async move {
            let (pool, queue) = (&pool, queue.as_deref());
            retrying(|| async move {
                transaction!(pool, REPLAY_DEAD_LETTER, |conn| replay_dead_letter_in(
                    conn,
                    task,
                    queue,
                    reset_retries,
                    now
                ))
            })
            .await
        })
        .await
    }

    async fn discard_dead_letter(
        &self,
        task: InvocationId,
        deliver: Option<Delivery>,
        execution: Option<ExecutionOutcome>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let pool = self.pool.clone();
        detached(DISCARD_DEAD_LETTER, async move {
            let (pool, deliver, outcome) = (&pool, deliver.as_ref(), execution.as_ref());
            retrying(|| async move {
                transaction!(pool, DISCARD_DEAD_LETTER, |conn| discard_dead_letter_in(
                    conn, task, deliver, outcome, now
                ))
            })
            .await
        })
        .await
    }
}

#[async_trait]
impl CacheStore for PostgresBackend {
    async fn cache_get(&self, key: CallKey) -> StoreResult<Option<Vec<u8>>> {
        const OP: &str = "cache_get";
        sqlx::query_scalar(sql::CACHE_GET)
            .bind(key.0.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(read_err(OP))
    }
}

#[async_trait]
impl IdempotencyStore for PostgresBackend {
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin> {
        let pool = &self.pool;
        // The key can be released between taking it failed and reading it;
        // then it is free again and the next round takes it.
        for _ in 0..16 {
            let found = retrying(|| begin_idempotent_once(pool, key, owner)).await?;
            if let Some(found) = found {
                return Ok(found);
            }
        }
        Err(StoreError::database(format!(
            "{BEGIN_IDEMPOTENT}: idempotency key {key:?} kept changing hands; try again"
        )))
    }
}

#[async_trait]
impl TaskStore for PostgresBackend {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        if request.limit == 0 || request.functions.is_empty() {
            return Ok(Vec::new());
        }
        let limited = request
            .concurrency_limits
            .iter()
            .any(|(f, _)| request.functions.contains(f));
        if limited {
            let pool = self.pool.clone();
            return detached(CLAIM, async move {
                let (pool, req) = (&pool, &request);
                retrying(
                    || async move { transaction!(pool, CLAIM, |conn| claim_limited(conn, req)) },
                )
                .await
            })
            .await;
        }
        let (pool, req) = (&self.pool, &request);
        retrying(|| async move {
            let rows = sqlx::query(sql::CLAIM)
                .bind(req.now.0)
                .bind(&req.functions)
                .bind(req.queues.as_deref())
                .bind(req.tags.as_deref())
                .bind(sql_shared::as_i64(req.limit))
                .bind(req.worker.as_str())
                .bind(req.lease_until.0)
                .bind(req.versions())
                .bind(req.code_version.as_deref())
                .fetch_all(pool)
                .await
                .map_err(db(CLAIM))?;
            Ok(rows.iter().map(claimed_task).collect::<StoreResult<_>>()?)
        })
        .await
    }

    /// The claim, then one read of every claimed task's journal (instead of
    /// one read per task by the worker). The read runs after the claim has
    /// committed, so it sees every event the previous lease holders
    /// committed; later writes of theirs are fenced. If that read fails the
    /// tasks are returned without journals (the worker reads them itself):
    /// they are leased already, and an error would strand them until their
    /// leases run out.
    async fn claim_with_journal(
        &self,
        request: ClaimRequest,
    ) -> StoreResult<Vec<(ClaimedTask, Option<Vec<JournalRow>>)>> {
        let tasks = self.claim(request).await?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = tasks.iter().map(|t| *t.invocation.as_uuid()).collect();
        let mut journals = match read_journals(&self.pool, &ids).await {
            Ok(journals) => journals,
            Err(_) => return Ok(tasks.into_iter().map(|t| (t, None)).collect()),
        };
        Ok(tasks
            .into_iter()
            .map(|t| {
                let rows = journals.remove(&t.invocation).unwrap_or_default();
                (t, Some(rows))
            })
            .collect())
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = leases.iter().map(|(i, _)| *i.as_uuid()).collect();
        let epochs: Vec<i64> = leases.iter().map(|(_, e)| e.0).collect();
        let pool = &self.pool;
        let (ids, epochs) = (&ids, &epochs);
        let held: Vec<Uuid> = retrying(|| async move {
            sqlx::query_scalar(sql::RENEW)
                .bind(ids)
                .bind(epochs)
                .bind(worker.as_str())
                .bind(until.0)
                .bind(now.0)
                .fetch_all(pool)
                .await
                .map_err(db(RENEW_LEASES))
        })
        .await?;
        Ok(leases
            .iter()
            .map(|(inv, _)| *inv)
            .filter(|inv| !held.contains(inv.as_uuid()))
            .collect())
    }

    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        sqlx::query(sql::ANNOUNCE_WORKER)
            .bind(worker.id.as_str())
            .bind(&worker.functions)
            .bind(worker.queues.as_deref())
            .bind(worker.tags.as_deref())
            .bind(worker.started_at.0)
            .bind(worker.seen_at.0)
            .bind(worker.expires_at.0)
            .execute(&self.pool)
            .await
            .map_err(read_err("announce_worker"))?;
        Ok(())
    }

    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()> {
        sqlx::query(sql::RETIRE_WORKER)
            .bind(worker.as_str())
            .execute(&self.pool)
            .await
            .map_err(read_err("retire_worker"))?;
        Ok(())
    }

    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()> {
        let pool = &self.pool;
        retrying(|| async move {
            sqlx::query(sql::FORGIVE_TAKEOVER)
                .bind(*invocation.as_uuid())
                .bind(epoch.0)
                .execute(pool)
                .await
                .map_err(db("forgive_takeover"))
                .map(drop)
        })
        .await
    }

    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        const OP: &str = "inbox";
        let rows = sqlx::query(sql::INBOX)
            .bind(*invocation.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter()
            .map(|row| {
                Ok(InboxItem {
                    id: InboxId(col(row, "inbox", "id")?),
                    event: col(row, "inbox", "event")?,
                })
            })
            .collect()
    }

    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()> {
        if turns.is_empty() {
            return Ok(());
        }
        let turns = if self.batches.enabled && turns.iter().all(TurnCommit::is_plain) {
            let keeper = self.keeper.clone();
            let batcher = self.batches.commits.get_or_init(|| {
                Batcher::start(self.batches.slots, MAX_BATCH, move |batch| {
                    commit_batch(keeper.clone(), batch)
                })
            });
            match batcher.call(turns).await {
                Ok(outcome) => return outcome,
                Err(Unbatched::Lost) => return Err(batch_lost(COMMIT)),
                Err(Unbatched::Gone(turns)) => turns,
            }
        } else {
            turns
        };
        let keeper = self.keeper.clone();
        detached(COMMIT, async move { commit_one(&keeper, &turns).await }).await
    }
}

#[async_trait]
impl SignalStore for PostgresBackend {
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        let pool = &self.pool;
        let payload = payload.as_slice();
        // Stored under this key already (a send whose reply was lost).
        let sent_before = || async move {
            let Some(key) = key else {
                return Ok(None);
            };
            let row = sqlx::query(sql::SIGNAL_BY_KEY)
                .bind(*execution.as_uuid())
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(read_err(SEND_SIGNAL))?;
            let Some(row) = row else {
                return Ok(None);
            };
            signal_record(&row)?
                .resent(execution, key, name, payload)
                .map(Some)
        };
        if let Some(id) = sent_before().await? {
            return Ok(id);
        }
        let id: Option<i64> = match retrying(|| async move {
            sqlx::query_scalar(sql::SEND_SIGNAL)
                .bind(*execution.as_uuid())
                .bind(name)
                .bind(payload)
                .bind(now.0)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(unique(SEND_SIGNAL, |detail| detail.to_string()))
        })
        .await
        {
            // Another send with the same key won the race.
            Err(StoreError::Conflict(_)) if key.is_some() => match sent_before().await? {
                Some(id) => return Ok(id),
                None => None,
            },
            other => other?,
        };
        if let Some(id) = id {
            return Ok(SignalId(id));
        }
        // Why not: no such execution, or it has ended.
        match self.execution(execution).await? {
            None => Err(StoreError::NotFound(format!("execution {execution}"))),
            Some(e) => Err(StoreError::ExecutionEnded {
                execution,
                status: e.status,
            }),
        }
    }

    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        const OP: &str = "pending_signals";
        let rows = sqlx::query(sql::PENDING_SIGNALS)
            .bind(*execution.as_uuid())
            .bind(names)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter().map(signal_record).collect()
    }
}

// ------------------------------------------------------------------ inspection

macro_rules! select_tasks {
    ($rest:literal) => {
        concat!(
            "SELECT invocation_id, execution_id, function, queue, priority, tags, state, \
             run_at, lease_owner, lease_until, epoch, attempts, retries, last_failed_at, \
             last_error FROM tasks ",
            $rest
        )
    };
}

fn task_record(row: &PgRow) -> StoreResult<TaskRecord> {
    rows::task_record(&Cols(row))
}

#[async_trait]
impl InspectStore for PostgresBackend {
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        const OP: &str = "list_tasks";
        // One execution's tasks come from tasks_by_execution; a NULL-or
        // test on the execution would scan the whole table under a
        // generic plan.
        let statement = if filter.execution.is_some() {
            select_tasks!(
                "WHERE execution_id = $1::uuid AND ($2::text IS NULL OR state = $2) \
                   AND ($3::text IS NULL OR queue = $3) \
                 ORDER BY created LIMIT $4 OFFSET $5"
            )
        } else {
            select_tasks!(
                "WHERE $1::uuid IS NULL AND ($2::text IS NULL OR state = $2) \
                   AND ($3::text IS NULL OR queue = $3) \
                 ORDER BY created LIMIT $4 OFFSET $5"
            )
        };
        let rows = sqlx::query(statement)
            .bind(filter.execution.map(|e| *e.as_uuid()))
            .bind(filter.state.map(StoredTaskState::as_str))
            .bind(filter.queue)
            .bind(sql_shared::as_i64(filter.limit))
            .bind(sql_shared::as_i64(filter.offset))
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter().map(task_record).collect()
    }

    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>> {
        const OP: &str = "task";
        let row = sqlx::query(select_tasks!("WHERE invocation_id = $1"))
            .bind(*invocation.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(read_err(OP))?;
        row.as_ref().map(task_record).transpose()
    }

    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>> {
        const OP: &str = "task failures";
        const T: &str = "task_failures";
        let rows = sqlx::query(sql::TASK_FAILURES)
            .bind(*invocation.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter()
            .map(|row| {
                let attempt: i32 = col(row, T, "attempt")?;
                Ok(AttemptFailure {
                    attempt: u32::try_from(attempt).map_err(|_| {
                        StoreError::Corrupt(format!("{T}.attempt is negative: {attempt}"))
                    })?,
                    at: Timestamp(col(row, T, "failed_at")?),
                    error: col(row, T, "error")?,
                })
            })
            .collect()
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        const OP: &str = "workers";
        const T: &str = "workers";
        let rows = sqlx::query(sql::WORKERS)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?;
        rows.iter()
            .map(|row| {
                Ok(WorkerRecord {
                    id: WorkerId::new(col::<String>(row, T, "worker_id")?),
                    functions: col(row, T, "functions")?,
                    queues: col(row, T, "queues")?,
                    tags: col(row, T, "tags")?,
                    started_at: Timestamp(col(row, T, "started_at")?),
                    seen_at: Timestamp(col(row, T, "seen_at")?),
                    expires_at: Timestamp(col(row, T, "expires_at")?),
                })
            })
            .collect()
    }

    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats> {
        const OP: &str = "stats";
        let mut by_status: HashMap<String, u64> = HashMap::new();
        for row in sqlx::query("SELECT status, COUNT(*) AS n FROM executions GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?
        {
            by_status.insert(col(&row, "executions", "status")?, count(&row, "n")?);
        }
        let mut by_state: HashMap<String, u64> = HashMap::new();
        for row in sqlx::query("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?
        {
            by_state.insert(col(&row, "tasks", "state")?, count(&row, "n")?);
        }
        let queues = sqlx::query(
            "SELECT queue, \
                COUNT(*) FILTER (WHERE state = 'ready') AS ready, \
                COUNT(*) FILTER (WHERE state = 'ready' AND run_at <= $1) AS due, \
                COUNT(*) FILTER (WHERE state = 'leased') AS leased, \
                COUNT(*) FILTER (WHERE state = 'waiting') AS waiting \
             FROM tasks WHERE state IN ('ready', 'leased', 'waiting') \
             GROUP BY queue ORDER BY queue",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await
        .map_err(read_err(OP))?
        .iter()
        .map(|row| {
            Ok(QueueStats {
                queue: col(row, "tasks", "queue")?,
                ready: count(row, "ready")?,
                due: count(row, "due")?,
                leased: count(row, "leased")?,
                waiting: count(row, "waiting")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let dead = sqlx::query("SELECT COUNT(*) AS n FROM dead_letters")
            .fetch_one(&self.pool)
            .await
            .map_err(read_err(OP))?;
        let versions = sqlx::query(sql::UNFINISHED_BY_VERSION)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err(OP))?
            .iter()
            .map(|row| {
                Ok((
                    col::<Option<String>>(row, "executions", "code_version")?,
                    count(row, "n")?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(StoreStats {
            executions: ExecutionStatus::ALL
                .into_iter()
                .map(|s| (s, by_status.get(s.as_str()).copied().unwrap_or(0)))
                .collect(),
            tasks: StoredTaskState::ALL
                .into_iter()
                .map(|s| (s, by_state.get(s.as_str()).copied().unwrap_or(0)))
                .collect(),
            queues,
            dead_letters: count(&dead, "n")?,
            versions,
        })
    }
}

// ------------------------------------------------------------------ group commit

/// Most calls in one batch.
const MAX_BATCH: usize = 64;

const READ_EXECUTION: &str = "execution";

/// The batchers of one backend (see [`crate::batch`]), started on first use
/// on the runtime of that call.
pub(crate) struct Batches {
    enabled: bool,
    /// Batches of one kind running at once.
    slots: usize,
    commits: OnceLock<Batcher<Vec<TurnCommit>, StoreResult<()>>>,
    creates: OnceLock<Batcher<NewExecution, StoreResult<()>>>,
    reads: OnceLock<Batcher<ExecutionId, StoreResult<Option<ExecutionRecord>>>>,
}

impl Batches {
    /// What group commit did so far.
    pub(crate) fn stats(&self) -> GroupCommitStats {
        let counts = |b: Option<BatchCounts>| b.unwrap_or_default();
        GroupCommitStats {
            commits: counts(self.commits.get().map(Batcher::counts)),
            creates: counts(self.creates.get().map(Batcher::counts)),
            reads: counts(self.reads.get().map(Batcher::counts)),
        }
    }

    /// `connections`: the pool's size. Each kind gets a quarter of it, so
    /// claims, renewals and the other calls always find a connection.
    pub(crate) fn new(enabled: bool, connections: u32) -> Self {
        Batches {
            enabled,
            slots: (connections as usize / 4).max(1),
            commits: OnceLock::new(),
            creates: OnceLock::new(),
            reads: OnceLock::new(),
        }
    }
}

fn batch_lost(op: &'static str) -> StoreError {
    StoreError::database(format!(
        "{op}: the batch task stopped before answering (its runtime shut down); the outcome is unknown"
    ))
}

/// Commits of several callers in one `stent_commit` call: one statement,
/// one transaction. If the server refused it (a lost lease, a conflict),
/// nothing of it was kept, and each caller's commit runs again on its own,
/// so the failure reaches the caller it belongs to and the others go
/// through; see [`shared_outcomes`] for the other failures.
async fn commit_batch(keeper: Arc<Keeper>, batch: Vec<Vec<TurnCommit>>) -> Vec<StoreResult<()>> {
    if let [turns] = batch.as_slice() {
        return vec![commit_one(&keeper, turns).await];
    }
    let mut ranges = Vec::with_capacity(batch.len());
    let mut all = Vec::new();
    for turns in batch {
        let start = all.len();
        all.extend(turns);
        ranges.push(start..all.len());
    }
    let plan = LockOrder::of(&all);
    let together = retrying(|| commit_by_function(&keeper, &all, &plan)).await;
    let mut outcomes = Vec::with_capacity(ranges.len());
    match shared_outcomes(together, ranges.len()) {
        Some(shared) => outcomes.extend(shared),
        None => {
            for range in ranges {
                outcomes.push(commit_one(&keeper, &all[range]).await);
            }
        }
    }
    outcomes
}

/// Every caller's answer when a batch succeeded, or failed with a database
/// error (a lost connection, say: the batch may have committed before the
/// reply was lost, so running the calls again could report conflicts for
/// writes that did land; each caller gets the error, as an unbatched call
/// would). `None` when the server refused the batch for one call's sake (a
/// lost lease, a conflict, a duplicate): nothing was kept, and the calls
/// must run again alone to find whose it is.
fn shared_outcomes(together: StoreResult<()>, calls: usize) -> Option<Vec<StoreResult<()>>> {
    match together {
        Ok(()) => Some((0..calls).map(|_| Ok(())).collect()),
        Err(StoreError::Database(error)) => Some(
            (0..calls)
                .map(|_| Err(StoreError::Database(error.clone())))
                .collect(),
        ),
        Err(_) => None,
    }
}

/// Executions created by several callers, in one statement. If the server
/// refused it (an execution that already exists, say), each runs again on
/// its own (see [`shared_outcomes`]).
async fn create_batch(keeper: Arc<Keeper>, batch: Vec<NewExecution>) -> Vec<StoreResult<()>> {
    if let [execution] = batch.as_slice() {
        return vec![create_one(&keeper, execution).await];
    }
    let together = retrying(|| create_many(&keeper, &batch)).await;
    let mut outcomes = Vec::with_capacity(batch.len());
    match shared_outcomes(together, batch.len()) {
        Some(shared) => outcomes.extend(shared),
        None => {
            for execution in &batch {
                outcomes.push(create_one(&keeper, execution).await);
            }
        }
    }
    outcomes
}

async fn create_many(keeper: &Arc<Keeper>, batch: &[NewExecution]) -> Attempt<()> {
    let mut roots = SpawnColumns::default();
    let (mut ids, mut functions, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    let (mut created, mut started, mut deadlines) = (Vec::new(), Vec::new(), Vec::new());
    let mut versions = Vec::new();
    for execution in batch {
        let leased = execution.root.lease.is_some();
        roots.push(&execution.root)?;
        ids.push(*execution.id.as_uuid());
        functions.push(execution.function.as_str());
        statuses.push(if leased {
            ExecutionStatus::Running.as_str()
        } else {
            ExecutionStatus::Pending.as_str()
        });
        created.push(execution.created_at.0);
        started.push(leased.then_some(execution.created_at.0));
        deadlines.push(execution.deadline.map(|t| t.0));
        versions.push(execution.code_version.as_deref());
    }
    let query = roots
        .bind(sqlx::query(sql::CREATE_EXECUTIONS))
        .bind(&ids)
        .bind(&functions)
        .bind(&statuses)
        .bind(&created)
        .bind(&started)
        .bind(&deadlines)
        .bind(&versions);
    keeper
        .execute(query)
        .await
        .map_err(unique(CREATE_EXECUTION, |_| {
            "an execution of the batch already exists".to_string()
        }))?;
    Ok(())
}

/// Creates one execution: its row, its root task and the root's `Started`
/// event, in one statement.
async fn create_one(keeper: &Arc<Keeper>, execution: &NewExecution) -> StoreResult<()> {
    let root = &execution.root;
    let leased = root.lease.is_some();
    let status = if leased {
        ExecutionStatus::Running
    } else {
        ExecutionStatus::Pending
    };
    let (state, owner, until, epoch, attempts) = lease_columns(root);
    retrying(|| async move {
        let query = sqlx::query(sql::CREATE_EXECUTION)
            .bind(*execution.id.as_uuid())
            .bind(&execution.function)
            .bind(status.as_str())
            .bind(&root.routing.queue)
            .bind(root.routing.priority)
            .bind(&root.routing.tags)
            .bind(execution.created_at.0)
            .bind(leased.then_some(execution.created_at.0))
            .bind(execution.deadline.map(|t| t.0))
            .bind(*root.invocation.as_uuid())
            .bind(&root.function)
            .bind(state)
            .bind(root.run_at.0)
            .bind(owner)
            .bind(until)
            .bind(epoch)
            .bind(attempts)
            .bind(root.started_event.as_slice())
            .bind(execution.code_version.as_deref());
        keeper
            .execute(query)
            .await
            .map_err(unique(CREATE_EXECUTION, |_| {
                format!("execution {} already exists", execution.id)
            }))?;
        Ok(())
    })
    .await
}

async fn read_one(pool: &PgPool, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
    let row = sqlx::query(sql::EXECUTION)
        .bind(*id.as_uuid())
        .fetch_optional(pool)
        .await
        .map_err(read_err(READ_EXECUTION))?;
    row.as_ref().map(execution_record).transpose()
}

/// Executions read for several callers in one statement.
async fn read_batch(
    pool: PgPool,
    batch: Vec<ExecutionId>,
) -> Vec<StoreResult<Option<ExecutionRecord>>> {
    if let [id] = batch.as_slice() {
        return vec![read_one(&pool, *id).await];
    }
    let ids: Vec<Uuid> = batch.iter().map(|id| *id.as_uuid()).collect();
    let rows = match sqlx::query(sql::EXECUTIONS_BY_ID)
        .bind(&ids)
        .fetch_all(&pool)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            let message = e.to_string();
            return batch
                .iter()
                .map(|_| Err(StoreError::database(format!("{READ_EXECUTION}: {message}"))))
                .collect();
        }
    };
    let mut found: HashMap<Uuid, StoreResult<ExecutionRecord>> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id = match col::<Uuid>(row, "executions", "id") {
            Ok(id) => id,
            // A row whose id cannot be read answers nobody; report it to all.
            Err(e) => {
                let message = e.to_string();
                return batch
                    .iter()
                    .map(|_| Err(StoreError::Corrupt(message.clone())))
                    .collect();
            }
        };
        found.insert(id, execution_record(row));
    }
    batch
        .iter()
        .map(|id| found.remove(id.as_uuid()).transpose())
        .collect()
}

/// PostgreSQL's SQL where it differs from SQLite's
/// ([`sql`](stent_journal::sql)): numbered, typed parameters; tags in an
/// array (its GIN index answers `@>`).
struct Dialect;

impl sql_shared::Dialect for Dialect {
    fn placeholder(n: usize, kind: ParamKind) -> String {
        let cast = match kind {
            ParamKind::Text => "text",
            ParamKind::Int => "int8",
            ParamKind::Id => "uuid",
        };
        format!("${n}::{cast}")
    }

    fn has_tag(tags: &str, param: &str) -> String {
        format!("{tags} @> ARRAY[{param}]")
    }
}

/// A listing of executions ([`sql_shared::execution_listing`]).
async fn list_filtered(
    pool: &PgPool,
    filter: &ExecutionFilter,
) -> StoreResult<Vec<ExecutionRecord>> {
    let listing = sql_shared::execution_listing::<Dialect>(sql::SELECT_EXECUTIONS, filter)?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(listing.statement));
    for param in listing.params {
        query = match param {
            Param::Text(t) => query.bind(t),
            Param::Int(i) => query.bind(i),
            Param::Id(u) => query.bind(u),
        };
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(read_err("list_executions"))?;
    rows.iter().map(execution_record).collect()
}

/// A `signals` row (`id`, `name`, `payload`).
fn signal_record(row: &PgRow) -> StoreResult<SignalRecord> {
    rows::signal_record(&Cols(row))
}

#[cfg(test)]
#[path = "set_commit_tests.rs"]
mod set_commit_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use stent_journal::store::Routing;

    /// The execution listing in PostgreSQL's dialect: numbered, typed
    /// parameters in the order the filter's conditions come.
    #[test]
    fn every_condition_numbers_its_parameters_in_order() {
        let everything = ExecutionFilter::default()
            .status(ExecutionStatus::Running)
            .function("shop::checkout".to_string())
            .queue("mail".to_string())
            .tag("vip".to_string())
            .created_after(Timestamp(5))
            .created_before(Timestamp(9))
            .id_prefix("3f2a".to_string())
            .limit(20)
            .offset(40);
        let s = sql_shared::execution_listing::<Dialect>("SELECT id FROM executions", &everything)
            .unwrap();
        assert_eq!(
            s.statement,
            "SELECT id FROM executions WHERE status = $1::text AND function = $2::text \
             AND queue = $3::text AND executions.tags @> ARRAY[$4::text] \
             AND created_at >= $5::int8 AND created_at < $6::int8 \
             AND id BETWEEN $7::uuid AND $8::uuid \
             ORDER BY created_at DESC, id ASC LIMIT $9::int8 OFFSET $10::int8"
        );
        let kinds: Vec<ParamKind> = s.params.iter().map(Param::kind).collect();
        use ParamKind::*;
        assert_eq!(kinds, [Text, Text, Text, Text, Int, Int, Id, Id, Int, Int]);
        assert_eq!(s.params[0], Param::Text("running".into()));
        assert_eq!(
            s.params[6],
            Param::Id("3f2a0000-0000-0000-0000-000000000000".parse().unwrap())
        );
    }

    #[test]
    fn a_batch_refused_for_one_call_runs_again_call_by_call() {
        let lost = StoreError::LeaseLost {
            invocation: ExecutionId::new_random().root_invocation(),
            epoch: LeaseEpoch(3),
        };
        assert!(shared_outcomes(Err(lost), 3).is_none());
        assert!(shared_outcomes(Err(StoreError::Conflict("dup".into())), 3).is_none());
    }

    fn id(n: u8) -> InvocationId {
        let mut bytes = [0u8; 16];
        bytes[0] = n;
        ExecutionId::from_uuid(Uuid::from_bytes(bytes)).root_invocation()
    }

    fn turn(n: u8, disposition: TaskDisposition) -> TurnCommit {
        TurnCommit::bare(id(n), LeaseEpoch(1), Timestamp(0), disposition)
    }

    fn hold() -> TaskDisposition {
        TaskDisposition::Hold {
            lease_until: Timestamp(1),
        }
    }

    fn delivers_to(parent: u8) -> TaskDisposition {
        TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent: id(parent),
                event: Vec::new(),
            }),
            execution: None,
        }
    }

    #[test]
    fn turns_are_applied_in_id_order_and_rows_locked_ahead_only_when_that_is_not_enough() {
        // A workflow's turn and the step it stores: reordered, nothing ahead.
        let plan = LockOrder::of(&[turn(9, hold()), turn(3, delivers_to(7))]);
        assert_eq!(plan.order, [1, 0]);
        assert!(plan.lock.is_empty());

        // A row the batch creates is applied after the turn creating it,
        // whatever its id, and is never locked ahead.
        let mut parent = turn(9, hold());
        parent.spawn = vec![NewInvocation {
            invocation: id(1),
            execution: ExecutionId::from_uuid(Uuid::nil()),
            function: "f".into(),
            routing: Routing::default(),
            run_at: Timestamp(0),
            started_event: Vec::new(),
            lease: None,
        }];
        let plan = LockOrder::of(&[turn(1, hold()), parent, turn(5, hold())]);
        assert_eq!(plan.order, [2, 1, 0]);
        assert!(plan.lock.is_empty());

        // A delivery waking a parent with a smaller id than its own row:
        // the rows cannot be reached in order, so they are locked first.
        let plan = LockOrder::of(&[turn(8, delivers_to(2)), turn(5, hold())]);
        assert_eq!(plan.order, [1, 0]);
        assert_eq!(plan.lock, [id(2), id(5), id(8)].map(|i| *i.as_uuid()));

        // Two deliveries to one parent keep their order (the inbox's).
        let plan = LockOrder::of(&[turn(8, delivers_to(9)), turn(5, delivers_to(9))]);
        assert_eq!(plan.order, [0, 1]);
        assert_eq!(plan.lock, [id(5), id(8), id(9)].map(|i| *i.as_uuid()));

        // Two turns of one invocation keep their order.
        let first = turn(4, hold());
        let mut second = turn(4, TaskDisposition::Park { run_at: None });
        second.epoch = LeaseEpoch(1);
        let plan = LockOrder::of(&[turn(6, hold()), first, second]);
        assert_eq!(plan.order, [1, 2, 0]);
        assert!(plan.lock.is_empty());
    }

    #[test]
    fn a_batch_that_succeeded_or_lost_its_connection_answers_every_call_alike() {
        let ok = shared_outcomes(Ok(()), 3).expect("shared");
        assert!(ok.len() == 3 && ok.iter().all(Result::is_ok));
        let lost =
            shared_outcomes(Err(StoreError::database("connection reset")), 2).expect("shared");
        assert_eq!(lost.len(), 2);
        assert!(lost.iter().all(
            |o| matches!(o, Err(StoreError::Database(m)) if m.message() == "connection reset")
        ));
    }

    fn size<F>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A commit's future is boxed (the batch, the store trait) or spawned
    /// once per commit and copied whole each time: sqlx's pool acquire held
    /// inline made it about 15 KB.
    #[tokio::test]
    async fn commit_futures_stay_small() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        let keeper = Keeper::new(pool, 4, Some(Duration::from_secs(1)));
        let turns: Vec<TurnCommit> = Vec::new();
        let plan = LockOrder::of(&turns);
        let limit = 4096;
        assert!(size(&keeper.take()) < limit);
        assert!(size(&commit_shaped(&keeper, &turns, &[])) < limit);
        assert!(size(&commit_by_function(&keeper, &turns, &plan)) < limit);
        assert!(size(&commit_one(&keeper, &turns)) < limit);
        assert!(size(&commit_batch(keeper.clone(), Vec::new())) < limit);
        assert!(size(&create_batch(keeper.clone(), Vec::new())) < limit);
    }
}
