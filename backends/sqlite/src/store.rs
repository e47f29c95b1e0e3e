//! The storage traits on SQLite.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, Sqlite};
use stent_journal::plan::{Effect, conflict};
use stent_journal::rows::{self, Columns};
use stent_journal::sql::{self as sql_shared, Param, ParamKind};
use stent_journal::store::{
    ATTEMPT_FAILURES_KEPT, AttemptFailure, CacheStore, ClaimRequest, ClaimedTask, CleanupCounts,
    DeadLetterRecord, DeadLetterStore, Delivery, ExecutionFilter, ExecutionOutcome,
    ExecutionRecord, ExecutionStatus, ExecutionStore, IdempotencyBegin, IdempotencyStore, InboxId,
    InboxItem, InspectStore, JournalRow, JournalStore, NewExecution, NewInvocation, QueueStats,
    SignalId, SignalRecord, SignalStore, StoreError, StoreResult, StoreStats, TaskDisposition,
    TaskFilter, TaskRecord, TaskState as StoredTaskState, TaskStore, TurnCommit, WorkerRecord,
};
use stent_journal::{
    CallKey, EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId,
};
use uuid::Uuid;

use crate::batch::Batch;
use crate::script::Script;
use crate::writer::Request;
use crate::{SqliteBackend, db, sql};

// Operation names, for error messages.
pub(crate) const CREATE_EXECUTION: &str = "create_execution";
pub(crate) const CLAIM: &str = "claim";
pub(crate) const RENEW_LEASES: &str = "renew_leases";
pub(crate) const COMMIT: &str = "commit";
pub(crate) const SEND_SIGNAL: &str = "send_signal";
pub(crate) const BEGIN_IDEMPOTENT: &str = "begin_idempotent";
pub(crate) const END_EXECUTION: &str = "end_execution";
pub(crate) const CLEANUP: &str = "cleanup";
pub(crate) const REPLAY_DEAD_LETTER: &str = "replay_dead_letter";
pub(crate) const DISCARD_DEAD_LETTER: &str = "discard_dead_letter";
pub(crate) const RESUME_EXECUTION: &str = "resume_execution";
pub(crate) const FORGIVE_TAKEOVER: &str = "forgive_takeover";
pub(crate) const ANNOUNCE_WORKER: &str = "announce_worker";
pub(crate) const RETIRE_WORKER: &str = "retire_worker";

// ------------------------------------------------------------------ decoding

fn col<'r, T>(row: &'r SqliteRow, table: &str, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: {e}")))
}

fn parsed<T>(text: &str, table: &str, column: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|e| {
        StoreError::Corrupt(format!(
            "{table}.{column} holds {text:?}, which is not valid: {e}"
        ))
    })
}

fn id_col<T>(row: &SqliteRow, table: &str, column: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = col(row, table, column)?;
    parsed(&text, table, column)
}

fn int_col<T: TryFrom<i64>>(row: &SqliteRow, table: &str, column: &str) -> StoreResult<T> {
    let v: i64 = col(row, table, column)?;
    T::try_from(v).map_err(|_| {
        StoreError::Corrupt(format!("{table}.{column} holds {v}, which is out of range"))
    })
}

fn tags_col(row: &SqliteRow, table: &str) -> StoreResult<Vec<String>> {
    let text: String = col(row, table, "tags")?;
    serde_json::from_str(&text).map_err(|e| {
        StoreError::Corrupt(format!(
            "{table}.tags holds {:?}, which is not a JSON array of strings: {e}",
            text.chars().take(200).collect::<String>()
        ))
    })
}

/// A SQLite row as [`Columns`]: ids are text, tags a JSON array, every
/// integer 64 bits.
struct Cols<'r>(&'r SqliteRow);

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
        col(self.0, table, column)
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
        id_col(self.0, table, column)
    }
    fn tags(&self, table: &str) -> StoreResult<Vec<String>> {
        tags_col(self.0, table)
    }
}

fn execution_record(row: &SqliteRow) -> StoreResult<ExecutionRecord> {
    rows::execution_record(&Cols(row))
}

fn dead_letter_record(row: &SqliteRow) -> StoreResult<DeadLetterRecord> {
    rows::dead_letter_record(&Cols(row))
}

fn journal_row(row: &SqliteRow) -> StoreResult<JournalRow> {
    rows::journal_row(&Cols(row))
}

/// A stored execution status.
fn status_col(row: &SqliteRow) -> StoreResult<ExecutionStatus> {
    rows::execution_status(&Cols(row))
}

// ------------------------------------------------------------------ encoding

/// A JSON array of strings, for `json_each` binds and the `tags` columns.
pub(crate) fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    // Serializing strings cannot fail.
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_string())
}

/// Maps an insert's error: a uniqueness violation is a [`StoreError::Conflict`].
fn insert_err(
    op: &'static str,
    what: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what()),
        _ => crate::error::database_error(op, e),
    }
}

// ------------------------------------------------------------------ shared steps

/// How a new invocation's task starts: state, lease owner, lease expiry,
/// epoch, attempts.
pub(crate) fn task_start(
    inv: &NewInvocation,
) -> (&'static str, Option<&str>, Option<i64>, i64, i64) {
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

/// Inserts an invocation's task and its `Started` event at seq 0.
async fn insert_invocation(
    conn: &mut SqliteConnection,
    inv: &NewInvocation,
    execution: ExecutionId,
    now: Timestamp,
    op: &'static str,
) -> StoreResult<()> {
    let invocation = inv.invocation.to_string();
    let (state, owner, until, epoch, attempts) = task_start(inv);
    let exists = || format!("invocation {} already exists", inv.invocation);
    sqlx::query(sql::INSERT_TASK)
        .bind(&invocation)
        .bind(execution.to_string())
        .bind(&inv.function)
        .bind(&inv.routing.queue)
        .bind(inv.routing.priority)
        .bind(json_list(&inv.routing.tags))
        .bind(state)
        .bind(inv.run_at.0)
        .bind(owner)
        .bind(until)
        .bind(epoch)
        .bind(attempts)
        .execute(&mut *conn)
        .await
        .map_err(insert_err(op, exists))?;
    sqlx::query(sql::INSERT_EVENT)
        .bind(&invocation)
        .bind(0i64)
        .bind(EventKind::Started.as_str())
        .bind(None::<Vec<u8>>)
        .bind(inv.started_event.as_slice())
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(insert_err(op, exists))?;
    Ok(())
}

/// What the fence statement binds for a turn's disposition: its kind and
/// its time (see [`sql::fence`]).
fn disposition_binds(disposition: &TaskDisposition) -> (&'static str, Option<i64>) {
    match disposition {
        TaskDisposition::Hold { lease_until } => ("hold", Some(lease_until.0)),
        TaskDisposition::Park { run_at } => ("park", run_at.map(|t| t.0)),
        TaskDisposition::Retry { run_at, .. } => ("retry", Some(run_at.0)),
        TaskDisposition::Finish { .. } => ("done", None),
        TaskDisposition::Pause { .. } => ("paused", None),
        TaskDisposition::DeadLetter { .. } => ("dead", None),
    }
}

/// Fences and disposes the tasks of `turns` (distinct invocations), a few
/// hundred per statement: for each turn, its task's row (execution, and what
/// a dead letter records), or `None` if the turn's lease is lost (then its
/// task is unchanged).
///
/// The disposition update is also the fence. It matches only a task leased
/// at the writer's epoch; nothing else in a turn can change that task's
/// lease or wake flag, so applying it before the rest of the turn is
/// equivalent.
pub(crate) async fn fence(
    conn: &mut SqliteConnection,
    turns: &[&TurnCommit],
) -> StoreResult<Vec<Option<SqliteRow>>> {
    let mut script = Script::default();
    let ids = push_fence(&mut script, turns);
    let rows = script
        .run(conn)
        .await
        .map_err(|f| crate::error::database_error(COMMIT, f.error))?;
    fenced(turns, &ids, rows)
}

/// Writes the statements that fence `turns` and apply their dispositions
/// into `script`; the turns' invocation ids, for [`fenced`].
pub(crate) fn push_fence(script: &mut Script, turns: &[&TurnCommit]) -> Vec<String> {
    let ids: Vec<String> = turns.iter().map(|t| t.invocation.to_string()).collect();
    for (chunk, ids) in turns.chunks(sql::MAX_ROWS).zip(ids.chunks(sql::MAX_ROWS)) {
        script.push_rows(sql::fence(chunk.len()), chunk.len());
        for (turn, id) in chunk.iter().zip(ids) {
            let (kind, at) = disposition_binds(&turn.disposition);
            script.bind(id.as_str());
            script.bind(turn.epoch.0);
            script.bind(kind);
            script.bind(turn.now.0);
            script.bind(at);
        }
        script.pad(chunk.len(), sql::FENCE_COLUMNS);
    }
    ids
}

/// The rows the fences of `turns` (invocation ids `ids`) changed, in the
/// order of the turns; `None` for a turn whose lease is lost. `rows` are
/// every row the fences returned.
pub(crate) fn fenced(
    turns: &[&TurnCommit],
    ids: &[String],
    rows: Vec<SqliteRow>,
) -> StoreResult<Vec<Option<SqliteRow>>> {
    let index: HashMap<&str, usize> = ids.iter().map(String::as_str).zip(0..).collect();
    let mut found: Vec<Option<SqliteRow>> = turns.iter().map(|_| None).collect();
    for row in rows {
        let id: String = col(&row, "tasks", "invocation_id")?;
        match index.get(id.as_str()) {
            Some(&at) if found[at].is_none() => found[at] = Some(row),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "commit: the fence changed task {id}, which is not one of its turns \
                     (or twice)"
                )));
            }
        }
    }
    Ok(found)
}

/// The error of a turn whose lease is lost.
pub(crate) fn lease_lost(turn: &TurnCommit) -> StoreError {
    StoreError::LeaseLost {
        invocation: turn.invocation,
        epoch: turn.epoch,
    }
}

/// Applies one turn, statement by statement: the fence, then the rest.
async fn apply_turn(conn: &mut SqliteConnection, turn: &TurnCommit) -> StoreResult<()> {
    let row = fence(conn, &[turn]).await?.pop().flatten();
    let row = row.ok_or_else(|| lease_lost(turn))?;
    turn_effects(conn, turn, &row, None).await
}

/// Everything a turn writes besides its fence and disposition, which are
/// applied (its task's row `row`). Its journal rows and new tasks go into
/// `batch` if given (written when it is flushed), else in at once, one
/// statement each.
pub(crate) async fn turn_effects<'a>(
    conn: &mut SqliteConnection,
    turn: &'a TurnCommit,
    row: &SqliteRow,
    mut batch: Option<&mut Batch<'a>>,
) -> StoreResult<()> {
    const OP: &str = COMMIT;
    let inv = turn.invocation.to_string();
    let now = turn.now.0;
    let execution: ExecutionId = id_col(row, "tasks", "execution_id")?;
    let execution_text = execution.to_string();

    for effect in turn.plan() {
        match effect {
            // Applied by the caller: it found `row`.
            Effect::Fence => {}
            Effect::Events(events) => match batch.as_deref_mut() {
                Some(batch) => batch.add_events(turn),
                None => {
                    for event in events {
                        sqlx::query(sql::INSERT_EVENT)
                            .bind(&inv)
                            .bind(i64::from(event.seq.0))
                            .bind(event.kind.as_str())
                            .bind(event.call_key.as_ref().map(|k| k.0.as_slice()))
                            .bind(event.bytes.as_slice())
                            .bind(now)
                            .execute(&mut *conn)
                            .await
                            .map_err(insert_err(OP, || {
                                format!(
                                    "journal of invocation {} already has an event at seq {}",
                                    turn.invocation, event.seq
                                )
                            }))?;
                    }
                }
            },
            Effect::Spawn(children) => {
                for child in children {
                    match batch.as_deref_mut() {
                        Some(batch) => batch.add_invocation(child, child.execution, turn.now),
                        None => {
                            insert_invocation(conn, child, child.execution, turn.now, OP).await?
                        }
                    }
                }
            }
            Effect::ConsumeInbox(ids) => {
                for id in ids {
                    let done = sqlx::query(sql::CONSUME_INBOX)
                        .bind(id.0)
                        .bind(&inv)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                    if done.rows_affected() != 1 {
                        return Err(conflict::inbox_missing(turn.invocation, &[*id]));
                    }
                }
            }
            Effect::ConsumeSignals(ids) => {
                for id in ids {
                    let done = sqlx::query(sql::CONSUME_SIGNAL)
                        .bind(&inv)
                        .bind(id.0)
                        .bind(&execution_text)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                    if done.rows_affected() != 1 {
                        return Err(conflict::signals_missing(execution, &[*id]));
                    }
                }
            }
            Effect::CachePut(entries) => {
                for (key, value) in entries {
                    sqlx::query(sql::CACHE_PUT)
                        .bind(key.0.as_slice())
                        .bind(value.as_slice())
                        .bind(now)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                }
            }
            Effect::IdempotencyDone(keys) => {
                for (key, value) in keys {
                    let done = sqlx::query(sql::IDEMPOTENCY_DONE)
                        .bind(key.as_str())
                        .bind(&inv)
                        .bind(value.as_slice())
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                    if done.rows_affected() != 1 {
                        return Err(conflict::idempotency_not_held(key, turn.invocation));
                    }
                }
            }
            Effect::IdempotencyRelease(keys) => {
                for key in keys {
                    sqlx::query(sql::IDEMPOTENCY_RELEASE)
                        .bind(key.as_str())
                        .bind(&inv)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                }
            }
            Effect::RecordFailure(error) => {
                for statement in [sql::RECORD_FAILURE, sql::APPEND_FAILURE] {
                    sqlx::query(statement)
                        .bind(&inv)
                        .bind(now)
                        .bind(error)
                        .execute(&mut *conn)
                        .await
                        .map_err(db(OP))?;
                }
                sqlx::query(sql::TRIM_FAILURES)
                    .bind(&inv)
                    .bind(i64::from(ATTEMPT_FAILURES_KEPT))
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
            }
            Effect::Deliver(d) => {
                if let Some(batch) = batch.as_deref_mut() {
                    // The parent's task must be in before it is woken.
                    batch.flush_if_new(conn, d.parent).await?;
                }
                deliver_result(conn, d, turn.now, OP).await?;
            }
            Effect::FinishExecution(outcome) => match batch.as_deref_mut() {
                Some(batch) => batch.add_outcome(execution, outcome, turn.now),
                None => finish_execution(conn, execution, outcome, turn.now, OP).await?,
            },
            Effect::PauseExecution(report) => {
                if let Some(batch) = batch.as_deref_mut() {
                    // Writes kept for the execution row go in first.
                    batch.flush_if_execution(conn, execution).await?;
                }
                sqlx::query(sql::PAUSE_EXECUTION)
                    .bind(&execution_text)
                    .bind(report)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))?;
            }
            Effect::DeadLetter(reason) => {
                const T: &str = "tasks";
                let function: String = col(row, T, "function")?;
                let queue: String = col(row, T, "queue")?;
                let retries: i64 = col(row, T, "retries")?;
                sqlx::query(sql::INSERT_DEAD_LETTER)
                    .bind(&inv)
                    .bind(&execution_text)
                    .bind(function)
                    .bind(queue)
                    .bind(reason)
                    .bind(retries)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(insert_err(OP, || {
                        format!("invocation {} already has a dead letter", turn.invocation)
                    }))?;
            }
        }
    }
    Ok(())
}

/// What finishing a task does besides ending it: deliver its result to the
/// parent (waking it), or record the execution's outcome.
async fn finish_effects(
    conn: &mut SqliteConnection,
    execution: ExecutionId,
    deliver: Option<&Delivery>,
    outcome: Option<&ExecutionOutcome>,
    now: Timestamp,
    op: &'static str,
) -> StoreResult<()> {
    if let Some(d) = deliver {
        deliver_result(conn, d, now, op).await?;
    }
    if let Some(o) = outcome {
        finish_execution(conn, execution, o, now, op).await?;
    }
    Ok(())
}

/// Records how `execution` ended.
async fn finish_execution(
    conn: &mut SqliteConnection,
    execution: ExecutionId,
    outcome: &ExecutionOutcome,
    now: Timestamp,
    op: &'static str,
) -> StoreResult<()> {
    sqlx::query(sql::FINISH_EXECUTION)
        .bind(execution.to_string())
        .bind(outcome.status.as_str())
        .bind(outcome.terminal_event.as_slice())
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

/// Puts a finished child's result in its parent's inbox and wakes the parent.
async fn deliver_result(
    conn: &mut SqliteConnection,
    d: &Delivery,
    now: Timestamp,
    op: &'static str,
) -> StoreResult<()> {
    let parent = d.parent.to_string();
    sqlx::query(sql::INSERT_INBOX)
        .bind(&parent)
        .bind(d.event.as_slice())
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    sqlx::query(sql::WAKE_TASK)
        .bind(&parent)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    Ok(())
}

// ------------------------------------------------------------------ writes
//
// Each runs on the writer connection inside the writer task's transaction
// (and savepoint); an error undoes everything it wrote.

/// How a new execution starts: its status, and when it started (if its root
/// is leased at once).
pub(crate) fn execution_start(execution: &NewExecution) -> (ExecutionStatus, Option<i64>) {
    if execution.root.lease.is_some() {
        (ExecutionStatus::Running, Some(execution.created_at.0))
    } else {
        (ExecutionStatus::Pending, None)
    }
}

/// The execution row, its root task and the root's `Started` event; into
/// `batch` if given (written when it is flushed).
pub(crate) async fn create_in<'a>(
    conn: &mut SqliteConnection,
    execution: &'a NewExecution,
    batch: Option<&mut Batch<'a>>,
) -> StoreResult<()> {
    const OP: &str = CREATE_EXECUTION;
    if let Some(batch) = batch {
        batch.add_execution(conn, execution).await?;
        return Ok(());
    }
    let root = &execution.root;
    let (status, started_at) = execution_start(execution);
    sqlx::query(sql::INSERT_EXECUTION)
        .bind(execution.id.to_string())
        .bind(&execution.function)
        .bind(status.as_str())
        .bind(&root.routing.queue)
        .bind(root.routing.priority)
        .bind(json_list(&root.routing.tags))
        .bind(execution.created_at.0)
        .bind(started_at)
        .bind(execution.deadline.map(|t| t.0))
        .bind(execution.code_version.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(insert_err(OP, || {
            format!("execution {} already exists", execution.id)
        }))?;
    insert_invocation(conn, root, execution.id, execution.created_at, OP).await
}

/// The turns of one `commit` call, each fenced by its epoch.
pub(crate) async fn commit_in(
    conn: &mut SqliteConnection,
    turns: &[TurnCommit],
) -> StoreResult<()> {
    for turn in turns {
        apply_turn(conn, turn).await?;
    }
    Ok(())
}

/// Extends the leases still held; returns the lost ones.
pub(crate) async fn renew_in(
    conn: &mut SqliteConnection,
    worker: &WorkerId,
    leases: &[(InvocationId, LeaseEpoch)],
    until: Timestamp,
) -> StoreResult<Vec<InvocationId>> {
    const OP: &str = RENEW_LEASES;
    let mut lost = Vec::new();
    for (inv, epoch) in leases {
        let done = sqlx::query(sql::RENEW)
            .bind(inv.to_string())
            .bind(worker.as_str())
            .bind(epoch.0)
            .bind(until.0)
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
        if done.rows_affected() == 0 {
            lost.push(*inv);
        }
    }
    Ok(lost)
}

/// Stores a signal and wakes its execution's tasks.
pub(crate) async fn signal_in(
    conn: &mut SqliteConnection,
    execution: ExecutionId,
    name: &str,
    payload: &[u8],
    key: Option<&str>,
    now: Timestamp,
) -> StoreResult<SignalId> {
    const OP: &str = SEND_SIGNAL;
    let id = execution.to_string();
    if let Some(key) = key {
        let sent = sqlx::query(sql::SIGNAL_BY_KEY)
            .bind(&id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?;
        if let Some(row) = sent {
            return signal_record(&row)?.resent(execution, key, name, payload);
        }
    }
    let inserted = sqlx::query(sql::INSERT_SIGNAL)
        .bind(&id)
        .bind(name)
        .bind(payload)
        .bind(now.0)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(OP))?;
    let Some(row) = inserted else {
        // Why not: no such execution, or it has ended.
        let status = sqlx::query(sql::EXECUTION_STATUS)
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?;
        return Err(match status {
            None => StoreError::NotFound(format!("execution {execution}")),
            Some(row) => StoreError::ExecutionEnded {
                execution,
                status: status_col(&row)?,
            },
        });
    };
    let signal: i64 = col(&row, "signals", "id")?;
    sqlx::query(sql::WAKE_EXECUTION)
        .bind(&id)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    Ok(SignalId(signal))
}

/// Claim order of a task: priority (highest first), `run_at`, creation.
type ClaimOrder = (Reverse<i64>, i64, i64);

fn claim_order(row: &SqliteRow) -> StoreResult<ClaimOrder> {
    const T: &str = "tasks";
    Ok((
        Reverse(col(row, T, "priority")?),
        col(row, T, "run_at")?,
        col(row, T, "created")?,
    ))
}

/// Whether enough tasks are due for a claim to walk the claim-order index.
async fn many_due(conn: &mut SqliteConnection, now: Timestamp) -> StoreResult<bool> {
    let due: i64 = sqlx::query_scalar(sql::COUNT_DUE)
        .bind(now.0)
        .bind(sql::MANY_DUE)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(CLAIM))?;
    Ok(due >= sql::MANY_DUE)
}

/// Leases up to `req.limit` tasks and marks their executions running.
pub(crate) async fn claim_in(
    conn: &mut SqliteConnection,
    req: &ClaimRequest,
) -> StoreResult<Vec<ClaimedTask>> {
    const OP: &str = CLAIM;
    let limited = req
        .concurrency_limits
        .iter()
        .any(|(f, _)| req.functions.contains(f));
    let rows = if limited {
        let ids = limited_candidates(conn, req).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(sql::CLAIM_IDS)
            .bind(req.worker.as_str())
            .bind(req.lease_until.0)
            .bind(json_list(&ids))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?
    } else {
        let claim = if many_due(conn, req.now).await? {
            sql::CLAIM_MANY_DUE
        } else {
            sql::CLAIM_FEW_DUE
        };
        sqlx::query(claim)
            .bind(req.worker.as_str())
            .bind(req.lease_until.0)
            .bind(req.now.0)
            .bind(json_list(&req.functions))
            .bind(req.queues.as_deref().map(json_list))
            .bind(req.tags.as_deref().map(json_list))
            .bind(sql_shared::as_i64(req.limit))
            .bind(req.versions().as_deref().map(json_list))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?
    };
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        claimed.push((claim_order(row)?, rows::claimed_task(&Cols(row))?));
    }
    // RETURNING gives no order; hand tasks out in claim order.
    claimed.sort_by_key(|(order, _)| *order);
    let claimed: Vec<ClaimedTask> = claimed.into_iter().map(|(_, t)| t).collect();
    if !claimed.is_empty() {
        let mut executions: Vec<String> = claimed.iter().map(|c| c.execution.to_string()).collect();
        executions.sort();
        executions.dedup();
        sqlx::query(sql::MARK_RUNNING)
            .bind(req.now.0)
            .bind(json_list(&executions))
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
        if let Some(version) = &req.code_version {
            sqlx::query(sql::PIN_CODE_VERSION)
                .bind(version)
                .bind(json_list(&executions))
                .execute(&mut *conn)
                .await
                .map_err(db(OP))?;
        }
    }
    Ok(claimed)
}

/// The ids a claim with concurrency limits leases, in claim order.
///
/// A function limited to `n` has `n - live leases` free slots; only its first
/// that many candidates can be claimed (later ones would find the slots taken
/// by earlier ones of the same batch). So the claim takes the first
/// `req.limit` of: the candidates of the unlimited functions, and the first
/// free-slots candidates of each limited function.
async fn limited_candidates(
    conn: &mut SqliteConnection,
    req: &ClaimRequest,
) -> StoreResult<Vec<String>> {
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
    let unlimited: Vec<&String> = req
        .functions
        .iter()
        .filter(|f| limit_of(f).is_none())
        .collect();

    let active = sqlx::query(sql::ACTIVE_LEASES)
        .bind(req.now.0)
        .bind(json_list(&limited))
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OP))?;
    let mut live = HashMap::new();
    for row in &active {
        let function: String = col(row, "tasks", "function")?;
        let n: i64 = col(row, "tasks", "n")?;
        live.insert(function, n);
    }

    let mut picks: Vec<(ClaimOrder, String)> = Vec::new();
    for function in limited {
        let cap = i64::from(limit_of(function).unwrap_or(0));
        let free = cap - live.get(function.as_str()).copied().unwrap_or(0);
        if free > 0 {
            let free = free.min(sql_shared::as_i64(req.limit));
            let statement = sql::CANDIDATES_OF_FUNCTION;
            let function = function.clone();
            candidates(conn, statement, req, function, free, &mut picks).await?;
        }
    }
    if !unlimited.is_empty() {
        // The same choice of index as an unlimited claim makes.
        let statement = if many_due(conn, req.now).await? {
            sql::CANDIDATES_MANY_DUE
        } else {
            sql::CANDIDATES_FEW_DUE
        };
        let limit = sql_shared::as_i64(req.limit);
        let functions = json_list(&unlimited);
        candidates(conn, statement, req, functions, limit, &mut picks).await?;
    }
    picks.sort();
    picks.truncate(req.limit);
    Ok(picks.into_iter().map(|(_, id)| id).collect())
}

/// Adds the first `limit` claimable tasks of `functions` (by `statement`, one
/// of the `CANDIDATES_*`; a function name for `CANDIDATES_OF_FUNCTION`, a
/// JSON list for the others) to `picks`.
async fn candidates(
    conn: &mut SqliteConnection,
    statement: &'static str,
    req: &ClaimRequest,
    functions: String,
    limit: i64,
    picks: &mut Vec<(ClaimOrder, String)>,
) -> StoreResult<()> {
    let rows = sqlx::query(statement)
        .bind(req.now.0)
        .bind(functions)
        .bind(req.queues.as_deref().map(json_list))
        .bind(req.tags.as_deref().map(json_list))
        .bind(limit)
        .bind(req.versions().as_deref().map(json_list))
        .fetch_all(&mut *conn)
        .await
        .map_err(db(CLAIM))?;
    for row in &rows {
        picks.push((claim_order(row)?, col(row, "tasks", "invocation_id")?));
    }
    Ok(())
}

/// Takes an idempotency key for `owner` if it is free, or reports its state.
pub(crate) async fn begin_idempotent_in(
    conn: &mut SqliteConnection,
    key: &str,
    owner: InvocationId,
) -> StoreResult<IdempotencyBegin> {
    const OP: &str = BEGIN_IDEMPOTENT;
    const T: &str = "idempotency";
    let owner_text = owner.to_string();
    sqlx::query(sql::IDEMPOTENCY_TAKE)
        .bind(key)
        .bind(&owner_text)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    let row = sqlx::query(sql::IDEMPOTENCY_GET)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(OP))?;
    let state: String = col(&row, T, "state")?;
    match state.as_str() {
        "done" => {
            let value: Option<Vec<u8>> = col(&row, T, "value")?;
            Ok(IdempotencyBegin::Done(value.unwrap_or_default()))
        }
        "running" => {
            let holder: InvocationId = id_col(&row, T, "owner")?;
            if holder == owner {
                Ok(IdempotencyBegin::Owner)
            } else {
                Ok(IdempotencyBegin::Running { owner: holder })
            }
        }
        other => Err(StoreError::Corrupt(format!(
            "idempotency.state holds unknown state {other:?}"
        ))),
    }
}

/// Ends a non-terminal execution and cancels its unfinished tasks.
pub(crate) async fn end_execution_in(
    conn: &mut SqliteConnection,
    id: ExecutionId,
    status: ExecutionStatus,
    terminal_event: &[u8],
    now: Timestamp,
) -> StoreResult<bool> {
    const OP: &str = END_EXECUTION;
    let text = id.to_string();
    let row = sqlx::query(sql::EXECUTION_STATUS)
        .bind(&text)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(OP))?
        .ok_or_else(|| StoreError::NotFound(format!("execution {id}")))?;
    if status_col(&row)?.is_terminal() {
        return Ok(false);
    }
    sqlx::query(sql::FINISH_EXECUTION)
        .bind(&text)
        .bind(status.as_str())
        .bind(terminal_event)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    let kind = status.terminal_kind().unwrap_or(EventKind::Cancelled);
    sqlx::query(sql::APPEND_ENDING)
        .bind(id.root_invocation().to_string())
        .bind(kind.as_str())
        .bind(terminal_event)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    for statement in [
        sql::CANCEL_TASKS,
        sql::DELETE_DEAD_LETTERS_OF,
        sql::RELEASE_IDEMPOTENCY_OF,
    ] {
        sqlx::query(statement)
            .bind(&text)
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
    }
    Ok(true)
}

/// Resumes a paused execution and makes its paused tasks runnable.
/// Takes a takeover a live worker reported off the task's attempts (see
/// `TaskStore::forgive_takeover`).
pub(crate) async fn forgive_takeover_in(
    conn: &mut SqliteConnection,
    invocation: InvocationId,
    epoch: LeaseEpoch,
) -> StoreResult<()> {
    sqlx::query(sql::FORGIVE_TAKEOVER)
        .bind(invocation.to_string())
        .bind(epoch.0)
        .execute(&mut *conn)
        .await
        .map_err(db(FORGIVE_TAKEOVER))?;
    Ok(())
}

/// Records what `worker` serves and until when it is presumed alive.
pub(crate) async fn announce_worker_in(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
) -> StoreResult<()> {
    sqlx::query(sql::ANNOUNCE_WORKER)
        .bind(worker.id.as_str())
        .bind(json_list(&worker.functions))
        .bind(worker.queues.as_deref().map(json_list))
        .bind(worker.tags.as_deref().map(json_list))
        .bind(worker.started_at.0)
        .bind(worker.seen_at.0)
        .bind(worker.expires_at.0)
        .execute(&mut *conn)
        .await
        .map_err(db(ANNOUNCE_WORKER))?;
    Ok(())
}

/// Forgets `worker`.
pub(crate) async fn retire_worker_in(
    conn: &mut SqliteConnection,
    worker: &WorkerId,
) -> StoreResult<()> {
    sqlx::query(sql::RETIRE_WORKER)
        .bind(worker.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db(RETIRE_WORKER))?;
    Ok(())
}

/// A JSON array of strings stored in `column` of `workers` (`None` for NULL).
fn string_list_col(row: &SqliteRow, column: &str) -> StoreResult<Option<Vec<String>>> {
    let Some(text) = col::<Option<String>>(row, "workers", column)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        StoreError::Corrupt(format!(
            "workers.{column} holds {:?}, which is not a JSON array of strings: {e}",
            text.chars().take(200).collect::<String>()
        ))
    })
}

pub(crate) async fn resume_execution_in(
    conn: &mut SqliteConnection,
    id: ExecutionId,
    now: Timestamp,
) -> StoreResult<bool> {
    const OP: &str = RESUME_EXECUTION;
    let text = id.to_string();
    let resumed = sqlx::query(sql::RESUME_EXECUTION)
        .bind(&text)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    if resumed.rows_affected() == 0 {
        sqlx::query(sql::EXECUTION_STATUS)
            .bind(&text)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?
            .ok_or_else(|| StoreError::NotFound(format!("execution {id}")))?;
        return Ok(false);
    }
    sqlx::query(sql::RESUME_TASKS)
        .bind(&text)
        .bind(now.0)
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    Ok(true)
}

/// Counts what a cleanup of executions ended before `before` removes.
async fn cleanup_counts(
    conn: &mut SqliteConnection,
    before: Timestamp,
) -> StoreResult<CleanupCounts> {
    const OP: &str = CLEANUP;
    let mut counts = [0u64; 3];
    for (n, statement) in counts.iter_mut().zip([
        sql::COUNT_OLD_EXECUTIONS,
        sql::COUNT_OLD_TASKS,
        sql::COUNT_OLD_EVENTS,
    ]) {
        let c: i64 = sqlx::query_scalar(statement)
            .bind(before.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(db(OP))?;
        *n = u64::try_from(c).unwrap_or(0);
    }
    let [executions, tasks, events] = counts;
    Ok(CleanupCounts {
        executions,
        tasks,
        events,
    })
}

/// Deletes executions ended before `before` and everything of theirs.
pub(crate) async fn cleanup_in(
    conn: &mut SqliteConnection,
    before: Timestamp,
) -> StoreResult<CleanupCounts> {
    let counts = cleanup_counts(conn, before).await?;
    if counts.executions == 0 {
        return Ok(counts);
    }
    // Rows that hang off tasks first, then the tasks, then the executions
    // (every statement finds its rows through the executions).
    for statement in [
        sql::DELETE_OLD_EVENTS,
        sql::DELETE_OLD_INBOX,
        sql::DELETE_OLD_SIGNALS,
        sql::DELETE_OLD_DEAD_LETTERS,
        sql::DELETE_OLD_FAILURES,
        sql::DELETE_OLD_TASKS,
        sql::DELETE_OLD_EXECUTIONS,
    ] {
        sqlx::query(statement)
            .bind(before.0)
            .execute(&mut *conn)
            .await
            .map_err(db(CLEANUP))?;
    }
    Ok(counts)
}

/// Removes a dead letter: its execution, or `None` if there was none.
async fn take_dead_letter(
    conn: &mut SqliteConnection,
    task: InvocationId,
    op: &'static str,
) -> StoreResult<Option<ExecutionId>> {
    let row = sqlx::query(sql::DELETE_DEAD_LETTER)
        .bind(task.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(op))?;
    row.map(|r| id_col(&r, "dead_letters", "execution_id"))
        .transpose()
}

/// Makes a dead-lettered task runnable again.
pub(crate) async fn replay_dead_letter_in(
    conn: &mut SqliteConnection,
    task: InvocationId,
    queue: Option<&str>,
    reset_retries: bool,
    now: Timestamp,
) -> StoreResult<bool> {
    const OP: &str = REPLAY_DEAD_LETTER;
    let Some(execution) = take_dead_letter(conn, task, OP).await? else {
        return Ok(false);
    };
    let replayed = sqlx::query(sql::REPLAY_TASK)
        .bind(task.to_string())
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
            .bind(execution.to_string())
            .bind(queue)
            .execute(&mut *conn)
            .await
            .map_err(db(OP))?;
    }
    Ok(true)
}

/// Ends a dead-lettered task as a finishing one would.
pub(crate) async fn discard_dead_letter_in(
    conn: &mut SqliteConnection,
    task: InvocationId,
    deliver: Option<&Delivery>,
    outcome: Option<&ExecutionOutcome>,
    now: Timestamp,
) -> StoreResult<bool> {
    const OP: &str = DISCARD_DEAD_LETTER;
    let Some(execution) = take_dead_letter(conn, task, OP).await? else {
        return Ok(false);
    };
    sqlx::query(sql::DISCARD_TASK)
        .bind(task.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db(OP))?;
    finish_effects(conn, execution, deliver, outcome, now, OP).await?;
    Ok(true)
}

// ------------------------------------------------------------------ traits

#[async_trait]
impl JournalStore for SqliteBackend {
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>> {
        const OP: &str = "read_journal";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::READ_JOURNAL)
            .bind(invocation.to_string())
            .bind(i64::from(from.0))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
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
        let kinds = kinds.map(|ks| json_list(&ks.iter().map(|k| k.as_str()).collect::<Vec<_>>()));
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::READ_EXECUTION_JOURNAL)
            .bind(execution.to_string())
            .bind(kinds)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
        let mut out: Vec<(InvocationId, Vec<JournalRow>)> = Vec::new();
        for row in &rows {
            let invocation: InvocationId = id_col(row, "tasks", "invocation_id")?;
            let entry = journal_row(row)?;
            match out.last_mut() {
                Some((last, group)) if *last == invocation => group.push(entry),
                _ => out.push((invocation, vec![entry])),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExecutionStore for SqliteBackend {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        self.write(CREATE_EXECUTION, |reply| {
            Request::CreateExecution(execution, reply)
        })
        .await
    }

    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        const OP: &str = "execution";
        let mut conn = self.reader(OP).await?;
        let row = sqlx::query(sql::EXECUTION)
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?;
        row.as_ref().map(execution_record).transpose()
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        let mut conn = self.reader("list_executions").await?;
        list_filtered(&mut conn, &filter).await
    }

    async fn queue_depth(&self, queue: Option<&str>, _now: Timestamp) -> StoreResult<u64> {
        const OP: &str = "queue_depth";
        let mut conn = self.reader(OP).await?;
        let query = match queue {
            Some(q) => sqlx::query(sql::QUEUE_DEPTH).bind(q),
            None => sqlx::query(sql::QUEUE_DEPTH_ALL),
        };
        let row = query.fetch_one(&mut *conn).await.map_err(db(OP))?;
        let n: i64 = row.try_get(0).map_err(db(OP))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.write(END_EXECUTION, |pending| Request::EndExecution {
            id,
            status,
            terminal_event,
            now,
            pending,
        })
        .await
    }

    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        self.write(RESUME_EXECUTION, |pending| Request::ResumeExecution {
            id,
            now,
            pending,
        })
        .await
    }

    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts> {
        if dry_run {
            let mut conn = self.reader(CLEANUP).await?;
            return cleanup_counts(&mut conn, before).await;
        }
        self.write(CLEANUP, |pending| Request::Cleanup { before, pending })
            .await
    }
}

#[async_trait]
impl DeadLetterStore for SqliteBackend {
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>> {
        const OP: &str = "list_dead_letters";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::LIST_DEAD_LETTERS)
            .bind(sql_shared::as_i64(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
        rows.iter().map(dead_letter_record).collect()
    }

    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>> {
        const OP: &str = "get_dead_letter";
        let mut conn = self.reader(OP).await?;
        let row = sqlx::query(sql::DEAD_LETTER)
            .bind(task.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?;
        row.as_ref().map(dead_letter_record).transpose()
    }

    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.write(REPLAY_DEAD_LETTER, |pending| Request::ReplayDeadLetter {
            task,
            queue: queue.map(str::to_owned),
            reset_retries,
            now,
            pending,
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
        self.write(DISCARD_DEAD_LETTER, |pending| Request::DiscardDeadLetter {
            task,
            deliver,
            outcome: execution,
            now,
            pending,
        })
        .await
    }
}

#[async_trait]
impl CacheStore for SqliteBackend {
    async fn cache_get(&self, key: CallKey) -> StoreResult<Option<Vec<u8>>> {
        const OP: &str = "cache_get";
        let mut conn = self.reader(OP).await?;
        sqlx::query_scalar(sql::CACHE_GET)
            .bind(key.0.as_slice())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))
    }
}

#[async_trait]
impl IdempotencyStore for SqliteBackend {
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin> {
        self.write(BEGIN_IDEMPOTENT, |pending| Request::BeginIdempotent {
            key: key.to_owned(),
            owner,
            pending,
        })
        .await
    }
}

#[async_trait]
impl TaskStore for SqliteBackend {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        if request.limit == 0 || request.functions.is_empty() {
            return Ok(Vec::new());
        }
        self.write(CLAIM, |reply| Request::Claim(request, reply))
            .await
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        _now: Timestamp, // one host: its clock decides leases
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.write(RENEW_LEASES, |pending| Request::RenewLeases {
            worker: worker.clone(),
            leases: leases.to_vec(),
            until,
            pending,
        })
        .await
    }

    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        let worker = worker.clone();
        self.write(ANNOUNCE_WORKER, |pending| {
            Request::AnnounceWorker(worker, pending)
        })
        .await
    }

    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()> {
        let worker = worker.clone();
        self.write(RETIRE_WORKER, |pending| {
            Request::RetireWorker(worker, pending)
        })
        .await
    }

    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()> {
        self.write(FORGIVE_TAKEOVER, |pending| Request::ForgiveTakeover {
            invocation,
            epoch,
            pending,
        })
        .await
    }

    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        const OP: &str = "inbox";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::INBOX)
            .bind(invocation.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
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
        self.write(COMMIT, |reply| Request::Commit(turns, reply))
            .await
    }
}

#[async_trait]
impl SignalStore for SqliteBackend {
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        self.write(SEND_SIGNAL, |pending| Request::SendSignal {
            execution,
            name: name.to_owned(),
            payload,
            key: key.map(str::to_owned),
            now,
            pending,
        })
        .await
    }

    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        const OP: &str = "pending_signals";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::PENDING_SIGNALS)
            .bind(execution.to_string())
            .bind(json_list(names))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
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

fn task_record(row: &SqliteRow) -> StoreResult<TaskRecord> {
    rows::task_record(&Cols(row))
}

fn count_of(row: &SqliteRow, column: &str) -> StoreResult<u64> {
    let n: i64 = col(row, "count", column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[async_trait]
impl InspectStore for SqliteBackend {
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        const OP: &str = "list_tasks";
        let mut conn = self.reader(OP).await?;
        // One execution's tasks come from tasks_by_execution; a NULL-or
        // test on the execution would scan the whole table.
        let statement = if filter.execution.is_some() {
            select_tasks!(
                "WHERE execution_id = ?1 AND (?2 IS NULL OR state = ?2) \
                   AND (?3 IS NULL OR queue = ?3) \
                 ORDER BY created LIMIT ?4 OFFSET ?5"
            )
        } else {
            select_tasks!(
                "WHERE ?1 IS NULL AND (?2 IS NULL OR state = ?2) \
                   AND (?3 IS NULL OR queue = ?3) \
                 ORDER BY created LIMIT ?4 OFFSET ?5"
            )
        };
        let rows = sqlx::query(statement)
            .bind(filter.execution.map(|e| e.to_string()))
            .bind(filter.state.map(StoredTaskState::as_str))
            .bind(filter.queue)
            .bind(sql_shared::as_i64(filter.limit))
            .bind(sql_shared::as_i64(filter.offset))
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
        rows.iter().map(task_record).collect()
    }

    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>> {
        const OP: &str = "task";
        let mut conn = self.reader(OP).await?;
        let row = sqlx::query(select_tasks!("WHERE invocation_id = ?1"))
            .bind(invocation.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(OP))?;
        row.as_ref().map(task_record).transpose()
    }

    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>> {
        const OP: &str = "task failures";
        const T: &str = "task_failures";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::TASK_FAILURES)
            .bind(invocation.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
        rows.iter()
            .map(|row| {
                Ok(AttemptFailure {
                    attempt: int_col(row, T, "attempt")?,
                    at: Timestamp(col(row, T, "failed_at")?),
                    error: col(row, T, "error")?,
                })
            })
            .collect()
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        const OP: &str = "workers";
        const T: &str = "workers";
        let mut conn = self.reader(OP).await?;
        let rows = sqlx::query(sql::WORKERS)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?;
        rows.iter()
            .map(|row| {
                Ok(WorkerRecord {
                    id: WorkerId::new(col::<String>(row, T, "worker_id")?),
                    functions: string_list_col(row, "functions")?.unwrap_or_default(),
                    queues: string_list_col(row, "queues")?,
                    tags: string_list_col(row, "tags")?,
                    started_at: Timestamp(col(row, T, "started_at")?),
                    seen_at: Timestamp(col(row, T, "seen_at")?),
                    expires_at: Timestamp(col(row, T, "expires_at")?),
                })
            })
            .collect()
    }

    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats> {
        const OP: &str = "stats";
        let mut conn = self.reader(OP).await?;
        let mut by_status: HashMap<String, u64> = HashMap::new();
        for row in sqlx::query("SELECT status, COUNT(*) AS n FROM executions GROUP BY status")
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?
        {
            by_status.insert(col(&row, "executions", "status")?, count_of(&row, "n")?);
        }
        let mut by_state: HashMap<String, u64> = HashMap::new();
        for row in sqlx::query("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?
        {
            by_state.insert(col(&row, "tasks", "state")?, count_of(&row, "n")?);
        }
        let queues = sqlx::query(
            "SELECT queue, \
                SUM(state = 'ready') AS ready, \
                SUM(state = 'ready' AND run_at <= ?1) AS due, \
                SUM(state = 'leased') AS leased, \
                SUM(state = 'waiting') AS waiting \
             FROM tasks WHERE state IN ('ready', 'leased', 'waiting') \
             GROUP BY queue ORDER BY queue",
        )
        .bind(now.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OP))?
        .iter()
        .map(|row| {
            Ok(QueueStats {
                queue: col(row, "tasks", "queue")?,
                ready: count_of(row, "ready")?,
                due: count_of(row, "due")?,
                leased: count_of(row, "leased")?,
                waiting: count_of(row, "waiting")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let dead = sqlx::query("SELECT COUNT(*) AS n FROM dead_letters")
            .fetch_one(&mut *conn)
            .await
            .map_err(db(OP))?;
        let versions = sqlx::query(sql::UNFINISHED_BY_VERSION)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(OP))?
            .iter()
            .map(|row| {
                Ok((
                    col::<Option<String>>(row, "executions", "code_version")?,
                    count_of(row, "n")?,
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
            dead_letters: count_of(&dead, "n")?,
            versions,
        })
    }
}

/// SQLite's SQL where it differs from PostgreSQL's ([`sql`](stent_journal::sql)).
struct Dialect;

impl sql_shared::Dialect for Dialect {
    fn placeholder(_: usize, _: ParamKind) -> String {
        "?".into()
    }

    fn has_tag(tags: &str, param: &str) -> String {
        format!("EXISTS (SELECT 1 FROM json_each({tags}) AS t WHERE t.value = {param})")
    }
}

/// A listing of executions ([`sql_shared::execution_listing`]).
async fn list_filtered(
    conn: &mut SqliteConnection,
    filter: &ExecutionFilter,
) -> StoreResult<Vec<ExecutionRecord>> {
    let listing = sql_shared::execution_listing::<Dialect>(sql::SELECT_EXECUTIONS, filter)?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(listing.statement));
    for param in listing.params {
        query = match param {
            Param::Text(t) => query.bind(t),
            Param::Int(i) => query.bind(i),
            Param::Id(u) => query.bind(u.to_string()),
        };
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(db("list_executions"))?;
    rows.iter().map(execution_record).collect()
}

/// A `signals` row (`id`, `name`, `payload`).
fn signal_record(row: &SqliteRow) -> StoreResult<SignalRecord> {
    rows::signal_record(&Cols(row))
}
