//! Batched commits: the writes of many turns in a few statements, sent in
//! few queries.
//!
//! The writer task first applies each group this way (see
//! `writer::run_group`). The turns of consecutive `commit` requests are
//! fenced and disposed a run at a time, one statement per run
//! ([`store::fence`]). The new executions, the new tasks and the journal
//! rows of every turn and create, and the outcomes of finished executions,
//! are kept here and written a few hundred per statement when the batch is
//! flushed: before any other kind of request, before a statement that reads
//! or changes a row kept here, and at the end of the group. Everything else
//! a turn writes is applied as it comes, in order.
//!
//! Statements whose results are not read here (the `BEGIN`, the flushed
//! inserts, the `COMMIT`) wait in a [`Script`] and go out with the next
//! statement whose result is read (a run's fence) or at the end: a
//! sequential step's group is two queries, a create's one.
//!
//! That leaves the database as applying the requests one by one would:
//! nothing in a commit or a create reads the journal, the other rows kept
//! are written before anything else reads or changes them (tasks in
//! creation order, outcomes in order), and a run's fences come before the
//! rest of its turns only when that rest cannot change them: a run's
//! invocations are distinct, and none of them is woken (delivered to) or
//! created by an earlier turn of the run.
//!
//! A failure here does not say which request failed (a batched insert may
//! hold the rows of many), nor is it always the failure the requests would
//! meet one by one: the writer then rolls back and applies the group again
//! request by request. A failed `BEGIN` or `COMMIT` is the transaction's
//! failure instead ([`Batch::transaction_failure`]).

use std::collections::HashSet;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use stent_journal::plan::Effect;
use stent_journal::store::{
    DatabaseError, ExecutionOutcome, NewExecution, NewInvocation, StoreError, StoreResult,
    TaskDisposition, TurnCommit,
};
use stent_journal::{EventKind, ExecutionId, InvocationId, Timestamp};

use crate::script::{Script, ScriptFailure};
use crate::{sql, store};

/// A task to insert.
struct NewTask<'a> {
    invocation: &'a NewInvocation,
    execution: ExecutionId,
    /// Its final turn came in the same group before the task was written
    /// (a step run inline by its parent's worker): it is written done.
    ended: bool,
}

/// A journal row to insert.
struct NewRow<'a> {
    invocation: InvocationId,
    seq: u32,
    kind: &'static str,
    call_key: Option<&'a [u8]>,
    payload: &'a [u8],
    recorded_at: Timestamp,
}

/// An execution's outcome to record.
struct Outcome<'a> {
    execution: ExecutionId,
    outcome: &'a ExecutionOutcome,
    now: Timestamp,
}

/// The writes of a group kept for later, borrowed from its requests.
#[derive(Default)]
pub(crate) struct Batch<'a> {
    /// Turns not applied yet, in order.
    turns: Vec<&'a TurnCommit>,
    /// Executions to insert.
    executions: Vec<&'a NewExecution>,
    /// Tasks to insert, in creation order.
    tasks: Vec<NewTask<'a>>,
    /// Their invocations.
    new: HashSet<InvocationId>,
    /// Journal rows to insert.
    rows: Vec<NewRow<'a>>,
    /// Execution outcomes to record, in order.
    outcomes: Vec<Outcome<'a>>,
    /// The executions whose row is inserted, or whose outcome is recorded,
    /// by what is kept.
    kept_executions: HashSet<ExecutionId>,
    /// Statements written but not sent yet.
    pending: Script,
    /// `pending` starts with the transaction's `BEGIN`.
    begin_pending: bool,
    /// `pending` ends with the transaction's `COMMIT`.
    commit_pending: bool,
    /// Rows the fences already written return first when `pending` is sent,
    /// checked in SQL (see [`sql::FENCE_GUARD`]) and not read.
    unread_rows: usize,
    /// The `BEGIN` or the `COMMIT` failed: the transaction's failure.
    transaction_failure: Option<DatabaseError>,
}

impl<'a> Batch<'a> {
    /// Begins the transaction, with the first statement sent.
    pub(crate) fn begin(&mut self) {
        debug_assert!(self.pending.is_empty());
        self.pending.push(sql::BEGIN);
        self.begin_pending = true;
    }

    /// Why the transaction failed, if its `BEGIN` or `COMMIT` did (and not
    /// a statement of a request). It began if the `BEGIN` was sent and
    /// succeeded, even if the `COMMIT` then failed.
    pub(crate) fn transaction_failure(&mut self) -> Option<DatabaseError> {
        self.transaction_failure.take()
    }

    /// True once the `BEGIN` is sent and succeeded.
    pub(crate) fn began(&self) -> bool {
        !self.begin_pending
    }

    /// Queues the turns of a `commit`, to be applied with the next
    /// [`create`](Self::create) or [`settle`](Self::settle).
    pub(crate) fn queue(&mut self, turns: &'a [TurnCommit]) {
        self.turns.extend(turns);
    }

    /// Applies the queued turns, then creates `execution` (kept for later).
    pub(crate) async fn create(
        &mut self,
        conn: &mut SqliteConnection,
        execution: &'a NewExecution,
    ) -> StoreResult<()> {
        self.apply_turns(conn).await?;
        store::create_in(conn, execution, Some(self)).await
    }

    /// Keeps a new execution: its row, its root task and the root's
    /// `Started` event.
    pub(crate) async fn add_execution(
        &mut self,
        conn: &mut SqliteConnection,
        execution: &'a NewExecution,
    ) -> StoreResult<()> {
        // An outcome kept for an execution of that id is recorded first.
        self.flush_if_execution(conn, execution.id).await?;
        self.executions.push(execution);
        self.kept_executions.insert(execution.id);
        self.add_invocation(&execution.root, execution.id, execution.created_at);
        Ok(())
    }

    /// Keeps the outcome of `execution`, to be recorded after the rows kept
    /// before it.
    pub(crate) fn add_outcome(
        &mut self,
        execution: ExecutionId,
        outcome: &'a ExecutionOutcome,
        now: Timestamp,
    ) {
        self.outcomes.push(Outcome {
            execution,
            outcome,
            now,
        });
        self.kept_executions.insert(execution);
    }

    /// Applies the queued turns and writes everything kept: afterwards the
    /// database holds every write so far.
    pub(crate) async fn settle(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        self.apply_turns(conn).await?;
        self.flush(conn).await
    }

    /// Applies the queued turns, writes everything kept and commits, the
    /// last writes and the `COMMIT` in one query.
    pub(crate) async fn commit(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        self.apply_turns(conn).await?;
        self.write_kept();
        self.pending.push(sql::COMMIT);
        self.commit_pending = true;
        self.send(conn).await.map(drop)
    }

    /// Sends the statements written so far as one query; the rows they
    /// returned.
    async fn send(&mut self, conn: &mut SqliteConnection) -> StoreResult<Vec<SqliteRow>> {
        let begin = std::mem::take(&mut self.begin_pending);
        let commit = std::mem::take(&mut self.commit_pending);
        let unread = std::mem::take(&mut self.unread_rows);
        let last = self.pending.len().saturating_sub(1);
        match self.pending.run(conn).await {
            // The guards saw every unread fence change its tasks.
            Ok(mut rows) => Ok(rows.split_off(unread.min(rows.len()))),
            Err(ScriptFailure { statement, error }) => {
                let error = crate::error::typed(error);
                // Nothing ran, or the BEGIN failed: no transaction is open.
                self.begin_pending = begin && matches!(statement, None | Some(0));
                let of_transaction = match statement {
                    Some(0) => begin,
                    Some(n) => commit && n == last,
                    None => false,
                };
                if of_transaction {
                    self.transaction_failure = Some(error);
                    return Err(StoreError::database(
                        "commit: the transaction failed (its error is the group's)",
                    ));
                }
                Err(StoreError::Database(error.context(OP)))
            }
        }
    }

    /// Keeps the journal rows of `turn`'s events.
    pub(crate) fn add_events(&mut self, turn: &'a TurnCommit) {
        for event in &turn.events {
            self.rows.push(NewRow {
                invocation: turn.invocation,
                seq: event.seq.0,
                kind: event.kind.as_str(),
                call_key: event.call_key.as_ref().map(|k| k.0.as_slice()),
                payload: &event.bytes,
                recorded_at: turn.now,
            });
        }
    }

    /// Keeps the journal rows and new invocations of `turn`.
    pub(crate) fn add_turn(&mut self, turn: &'a TurnCommit) {
        self.add_events(turn);
        for child in &turn.spawn {
            self.add_invocation(child, child.execution, turn.now);
        }
    }

    /// Keeps a new invocation: its task and its `Started` event at seq 0.
    pub(crate) fn add_invocation(
        &mut self,
        invocation: &'a NewInvocation,
        execution: ExecutionId,
        now: Timestamp,
    ) {
        self.tasks.push(NewTask {
            invocation,
            execution,
            ended: false,
        });
        self.new.insert(invocation.invocation);
        self.rows.push(NewRow {
            invocation: invocation.invocation,
            seq: 0,
            kind: EventKind::Started.as_str(),
            call_key: None,
            payload: &invocation.started_event,
            recorded_at: now,
        });
    }

    /// Writes everything kept if the task of `invocation` is among it.
    pub(crate) async fn flush_if_new(
        &mut self,
        conn: &mut SqliteConnection,
        invocation: InvocationId,
    ) -> StoreResult<()> {
        if self.new.contains(&invocation) {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// Writes everything kept if it inserts or ends `execution`.
    pub(crate) async fn flush_if_execution(
        &mut self,
        conn: &mut SqliteConnection,
        execution: ExecutionId,
    ) -> StoreResult<()> {
        if self.kept_executions.contains(&execution) {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// Applies the queued turns, a run at a time: the run's fences in one
    /// statement, then the rest of each of its turns in order.
    async fn apply_turns(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        let turns = std::mem::take(&mut self.turns);
        let mut rest = &turns[..];
        while let Some(first) = rest.first() {
            if self.fold_ended(first) {
                rest = &rest[1..];
                continue;
            }
            // Its task must be in before it is fenced.
            if self.new.contains(&first.invocation) {
                self.write_kept();
            }
            let (run, after) = rest.split_at(self.run_len(rest));
            let ids = store::push_fence(&mut self.pending, run);
            if run.iter().all(|turn| writes_only_rows(turn)) {
                // Nothing after the fence reads its rows: check it in SQL
                // and send it with what follows.
                self.pending.push(sql::FENCE_GUARD);
                self.pending
                    .bind(i64::try_from(run.len()).unwrap_or(i64::MAX));
                self.unread_rows += run.len();
                let ends: Vec<(&'a TurnCommit, &'a ExecutionOutcome)> = run
                    .iter()
                    .filter_map(|&turn| match &turn.disposition {
                        TaskDisposition::Finish {
                            execution: Some(outcome),
                            ..
                        } => Some((turn, outcome)),
                        _ => None,
                    })
                    .collect();
                if !ends.is_empty() {
                    // An execution's outcome is its root's to record: a root
                    // invocation's id is its execution's (checked in SQL).
                    let roots: Vec<String> =
                        ends.iter().map(|(t, _)| t.invocation.to_string()).collect();
                    self.pending.push(sql::ROOTS_GUARD);
                    self.pending
                        .bind(i64::try_from(roots.len()).unwrap_or(i64::MAX));
                    self.pending.bind(store::json_list(&roots));
                }
                for &turn in run {
                    self.add_turn(turn);
                }
                for (turn, outcome) in ends {
                    let execution = ExecutionId::from_uuid(*turn.invocation.as_uuid());
                    self.add_outcome(execution, outcome, turn.now);
                }
            } else {
                let rows = self.send(conn).await?;
                let fenced = store::fenced(run, &ids, rows)?;
                for (&turn, row) in run.iter().zip(fenced) {
                    let row = row.ok_or_else(|| store::lease_lost(turn))?;
                    store::turn_effects(conn, turn, &row, Some(self)).await?;
                }
            }
            rest = after;
        }
        Ok(())
    }

    /// Folds `turn` into its task kept here, if it is the plain end of an
    /// invocation created leased earlier in this group: the task is then
    /// written done, with the turn's events, as applying the turn after
    /// inserting the task would leave it. (The fence cannot fail: nothing
    /// else could take a lease on a task not written yet.) Saves writing
    /// everything kept before the turn, which an inline step's end, stored
    /// with the commit that creates it, would otherwise cost.
    fn fold_ended(&mut self, turn: &'a TurnCommit) -> bool {
        let plain_end = matches!(
            turn.disposition,
            TaskDisposition::Finish {
                deliver: None,
                execution: None,
            }
        ) && turn.epoch.0 == 1
            && turn.spawn.is_empty()
            && turn.consumed_inbox.is_empty()
            && turn.consumed_signals.is_empty()
            && turn.cache_put.is_empty()
            && turn.idempotency_done.is_empty()
            && turn.idempotency_released.is_empty();
        if !plain_end || !self.new.contains(&turn.invocation) {
            return false;
        }
        let Some(task) = self.tasks.iter_mut().find(|t| {
            t.invocation.invocation == turn.invocation && t.invocation.lease.is_some() && !t.ended
        }) else {
            return false;
        };
        task.ended = true;
        self.add_events(turn);
        true
    }

    /// How many of `turns` (at least one) can be fenced together, before the
    /// rest of any of them is applied: distinct invocations, none created or
    /// woken by an earlier one of them, none of a task still kept here
    /// (except the first, whose task is written before), at most
    /// [`sql::MAX_ROWS`].
    fn run_len(&self, turns: &[&'a TurnCommit]) -> usize {
        let mut fenced = HashSet::new();
        let mut created_or_woken = HashSet::new();
        for (n, turn) in turns.iter().enumerate() {
            let inv = turn.invocation;
            if n > 0
                && (n == sql::MAX_ROWS
                    || fenced.contains(&inv)
                    || created_or_woken.contains(&inv)
                    || self.new.contains(&inv))
            {
                return n;
            }
            fenced.insert(inv);
            created_or_woken.extend(turn.spawn.iter().map(|c| c.invocation));
            if let TaskDisposition::Finish {
                deliver: Some(d), ..
            } = &turn.disposition
            {
                created_or_woken.insert(d.parent);
            }
        }
        turns.len()
    }

    /// Writes everything kept and sends it, with whatever else waits.
    async fn flush(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        self.write_kept();
        self.send(conn).await.map(drop)
    }

    /// Writes everything kept, to be sent with the next query: the
    /// executions, tasks and journal rows, then the outcomes.
    fn write_kept(&mut self) {
        self.insert_executions();
        self.insert_tasks();
        self.insert_rows();
        self.record_outcomes();
        self.new.clear();
        self.kept_executions.clear();
    }

    fn insert_executions(&mut self) {
        let script = &mut self.pending;
        for chunk in self.executions.chunks(sql::MAX_ROWS) {
            script.push_rows(sql::insert_executions(chunk.len()), chunk.len());
            for execution in chunk {
                let root = &execution.root;
                let (status, started_at) = store::execution_start(execution);
                script.bind(execution.id.to_string());
                script.bind(execution.function.as_str());
                script.bind(status.as_str());
                script.bind(root.routing.queue.as_str());
                script.bind(root.routing.priority);
                script.bind(store::json_list(&root.routing.tags));
                script.bind(execution.created_at.0);
                script.bind(started_at);
                script.bind(execution.deadline.map(|t| t.0));
                script.bind(execution.code_version.as_deref());
            }
            script.pad(chunk.len(), sql::EXECUTION_COLUMNS);
        }
        self.executions.clear();
    }

    fn insert_tasks(&mut self) {
        let script = &mut self.pending;
        for chunk in self.tasks.chunks(sql::MAX_ROWS) {
            script.push_rows(sql::insert_tasks(chunk.len()), chunk.len());
            for (position, task) in (1i64..).zip(chunk) {
                let inv = task.invocation;
                let (state, owner, until, epoch, attempts) = if task.ended {
                    ("done", None, None, 1, 0)
                } else {
                    store::task_start(inv)
                };
                script.bind(inv.invocation.to_string());
                script.bind(task.execution.to_string());
                script.bind(inv.function.as_str());
                script.bind(inv.routing.queue.as_str());
                script.bind(inv.routing.priority);
                script.bind(store::json_list(&inv.routing.tags));
                script.bind(state);
                script.bind(inv.run_at.0);
                script.bind(owner);
                script.bind(until);
                script.bind(epoch);
                script.bind(attempts);
                script.bind(position);
            }
            script.pad(chunk.len(), sql::TASK_COLUMNS);
        }
        self.tasks.clear();
    }

    fn insert_rows(&mut self) {
        let script = &mut self.pending;
        for chunk in self.rows.chunks(sql::MAX_ROWS) {
            script.push_rows(sql::insert_events(chunk.len()), chunk.len());
            for row in chunk {
                script.bind(row.invocation.to_string());
                script.bind(i64::from(row.seq));
                script.bind(row.kind);
                script.bind(row.call_key);
                script.bind(row.payload);
                script.bind(row.recorded_at.0);
            }
            script.pad(chunk.len(), sql::EVENT_COLUMNS);
        }
        self.rows.clear();
    }

    /// Records the outcomes in order: a statement per run of distinct
    /// executions.
    fn record_outcomes(&mut self) {
        let script = &mut self.pending;
        let mut rest = &self.outcomes[..];
        while !rest.is_empty() {
            let mut seen = HashSet::new();
            let n = rest
                .iter()
                .take(sql::MAX_ROWS)
                .take_while(|o| seen.insert(o.execution))
                .count();
            let (run, after) = rest.split_at(n);
            script.push_rows(sql::finish_executions(run.len()), run.len());
            for o in run {
                script.bind(o.execution.to_string());
                script.bind(o.outcome.status.as_str());
                script.bind(o.outcome.terminal_event.as_slice());
                script.bind(o.now.0);
            }
            script.pad(run.len(), sql::FINISH_COLUMNS);
            rest = after;
        }
        self.outcomes.clear();
    }
}

/// The operation named in errors.
const OP: &str = store::COMMIT;

/// True if all `turn` writes besides its fence and disposition are journal
/// rows, new tasks and its execution's outcome, kept in the batch: then
/// nothing it writes depends on the row its fence returns (the outcome's
/// execution is checked in SQL), nor needs to know how many rows a
/// statement changed.
fn writes_only_rows(turn: &TurnCommit) -> bool {
    turn.plan().all(|effect| {
        matches!(
            effect,
            Effect::Fence | Effect::Events(_) | Effect::Spawn(_) | Effect::FinishExecution(_)
        )
    })
}
