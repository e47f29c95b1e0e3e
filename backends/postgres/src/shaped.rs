//! A commit of one or two plain turns as one SQL statement generated for
//! its shape, every value a scalar parameter.
//!
//! The commit of a steady sequential step is two turns: the workflow's
//! hold, with its events and the next step's task, and the finish of the
//! step it ran inline in its previous turn. `stent_commit` (PL/pgSQL) runs
//! that as about six statements, each with its own executor start-up, and
//! takes every row as arrays to unnest. Measured on the same connection and
//! the same rows, the function cost about 0.15 ms more of the server's CPU
//! per commit than one statement with scalar parameters, and arrays
//! unnested in one statement about half of that (docs/performance.md).
//! So a commit of this kind is written as one statement whose text follows
//! its shape — each turn's disposition, how many journal rows, how many
//! spawned tasks — and sqlx prepares each shape once per connection. The
//! limits on rows and spawns keep the number of shapes small.
//!
//! - **All or nothing.** The fences are chained: the second turn's update
//!   matches only if the first one's did. The statement ends by calling
//!   `stent_lease_lost` (migration 8), which raises `SL001` with the failed
//!   turn's index, unless the last fence matched; a raised error undoes the
//!   whole statement, its data-modifying parts included.
//! - **Lock order.** The turns' task rows are updated in invocation id
//!   order, the one order every transaction that updates several task rows
//!   keeps (migration 4).
//! - **What fits** ([`fits`]): one or two turns of distinct invocations,
//!   each holding, parking or finishing its task with no delivery (at most
//!   one of them ending its execution), and writing only events and
//!   spawned tasks.
//! - **A task born done.** A one-step workflow's commit spawns its step
//!   (leased to this worker, epoch 1) and finishes it in the same commit.
//!   One statement cannot update a row it inserts, so such a task is
//!   inserted as its finish leaves it (`done`, no lease, epoch 1, no
//!   attempts); nothing else could hold its lease in between, so that is
//!   its only fence.

use std::fmt::Write as _;

use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe, PgPool};
use stent_journal::plan::Effect;
use stent_journal::store::{ExecutionOutcome, NewInvocation, TaskDisposition, TurnCommit};
use stent_journal::{InvocationId, LeaseEpoch};

/// More turns than this go through `stent_commit`.
const MAX_TURNS: usize = 2;
/// More journal rows (events and spawned tasks' `Started`) than this go
/// through `stent_commit`: they would make statements of many shapes.
const MAX_ROWS: usize = 12;
/// More spawned tasks than this go through `stent_commit`.
const MAX_SPAWNS: usize = 4;

/// What a turn does to its task.
#[derive(Clone, Copy)]
enum Disposition {
    /// Keeps the lease, until a new time.
    Hold(i64),
    /// Gives the lease back and waits (until a time, if any).
    Park(Option<i64>),
    /// Finishes the task, with nothing to deliver (the execution's
    /// outcome, if any, is written apart).
    Done,
}

fn disposition(turn: &TurnCommit) -> Option<Disposition> {
    match &turn.disposition {
        TaskDisposition::Hold { lease_until } => Some(Disposition::Hold(lease_until.0)),
        TaskDisposition::Park { run_at } => Some(Disposition::Park(run_at.map(|t| t.0))),
        TaskDisposition::Finish { deliver: None, .. } => Some(Disposition::Done),
        _ => None,
    }
}

/// Whether `turns` commit as one generated statement; see the module docs.
pub(crate) fn fits(turns: &[TurnCommit]) -> bool {
    if turns.is_empty() || turns.len() > MAX_TURNS {
        return false;
    }
    let simple = turns.iter().all(|t| {
        disposition(t).is_some()
            && t.plan().all(|e| {
                matches!(
                    e,
                    Effect::Fence
                        | Effect::Events(_)
                        | Effect::Spawn(_)
                        | Effect::FinishExecution(_)
                )
            })
    });
    let outcomes = turns.iter().filter(|t| outcome(t).is_some()).count();
    let spawns: usize = turns.iter().map(|t| t.spawn.len()).sum();
    let rows: usize = turns.iter().map(|t| t.events.len()).sum::<usize>() + spawns;
    let distinct = match turns {
        [a, b] => a.invocation != b.invocation,
        _ => true,
    };
    // A turn of a task the commit spawns must be one born done.
    let born_right = turns.iter().all(|t| match spawned(turns, t.invocation) {
        None => true,
        Some(child) => born_done(t, child),
    });
    let fences = turns
        .iter()
        .filter(|t| spawned(turns, t.invocation).is_none())
        .count();
    simple
        && distinct
        && born_right
        && fences > 0
        && outcomes <= 1
        && spawns <= MAX_SPAWNS
        && rows <= MAX_ROWS
}

/// The task `invocation` if one of `turns` spawns it.
fn spawned(turns: &[TurnCommit], invocation: InvocationId) -> Option<&NewInvocation> {
    turns
        .iter()
        .flat_map(|t| &t.spawn)
        .find(|s| s.invocation == invocation)
}

/// Whether `turn` finishes `child`, spawned in the same commit leased to
/// this worker, so that the task can be written done at once: a plain
/// finish under the new lease's epoch, spawning nothing itself.
fn born_done(turn: &TurnCommit, child: &NewInvocation) -> bool {
    matches!(
        turn.disposition,
        TaskDisposition::Finish {
            deliver: None,
            execution: None
        }
    ) && child.lease.is_some()
        && turn.epoch == LeaseEpoch(1)
        && turn.spawn.is_empty()
}

/// How the turn ends its execution, if it does.
fn outcome(turn: &TurnCommit) -> Option<&ExecutionOutcome> {
    match &turn.disposition {
        TaskDisposition::Finish { execution, .. } => execution.as_ref(),
        _ => None,
    }
}

/// The statement and its parameters, built together so that each `$n`
/// is the value bound n-th.
struct Builder {
    sql: String,
    args: PgArguments,
    /// The first error encoding a value (reported when the query runs).
    error: Option<sqlx::error::BoxDynError>,
}

/// A parameter's placeholder, `$n::type`.
#[derive(Clone, Copy)]
struct Param(usize, &'static str);

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}::{}", self.0, self.1)
    }
}

impl Builder {
    /// Binds `value` and returns its placeholder, cast to `ty`.
    fn param<'a, T>(&mut self, value: T, ty: &'static str) -> Param
    where
        T: sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'a,
    {
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
        Param(self.args.len(), ty)
    }
}

/// Whether one of `turns` is the turn of `invocation`: a task spawned and
/// finished in the same commit (born done).
fn finished_here(turns: &[TurnCommit], invocation: InvocationId) -> bool {
    turns.iter().any(|t| t.invocation == invocation)
}

/// The statement committing `turns` (which [`fits`] accepted), in `order`
/// (invocation id order), with its parameters.
pub(crate) fn statement(
    turns: &[TurnCommit],
    order: &[usize],
) -> Result<(String, PgArguments), sqlx::error::BoxDynError> {
    let mut b = Builder {
        sql: String::with_capacity(2048),
        args: PgArguments::default(),
        error: None,
    };
    b.sql.push_str("WITH ");
    // The fenced turns, by their position in `order` (the index a lost
    // lease is raised with); a task born done has no fence of its own.
    let fenced: Vec<(usize, &TurnCommit)> = order
        .iter()
        .enumerate()
        .map(|(position, &i)| (position, &turns[i]))
        .filter(|(_, t)| spawned(turns, t.invocation).is_none())
        .collect();
    let mut ended = None;
    for (k, &(_, turn)) in fenced.iter().enumerate() {
        let now = b.param(turn.now.0, "int8");
        let set = match disposition(turn).ok_or("a turn the generated statement does not take")? {
            Disposition::Hold(until) => {
                let until = b.param(until, "int8");
                format!("lease_until = {until} - {now} + stent_clock({now}), attempts = 0")
            }
            Disposition::Park(run_at) => {
                let run_at = b.param(run_at, "int8");
                format!(
                    "state = CASE WHEN wake OR {run_at} IS NOT NULL THEN 'ready' ELSE 'waiting' END, \
                     run_at = CASE WHEN wake THEN {now} WHEN {run_at} IS NOT NULL THEN {run_at} \
                     ELSE run_at END, \
                     lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0"
                )
            }
            Disposition::Done => "state = 'done', lease_owner = NULL, lease_until = NULL, \
                                  wake = FALSE, attempts = 0"
                .to_string(),
        };
        let invocation = b.param(*turn.invocation.as_uuid(), "uuid");
        let epoch = b.param(turn.epoch.0, "int8");
        // The fence, chained to the previous one.
        let after = if k == 0 {
            String::new()
        } else {
            format!(" AND EXISTS (SELECT FROM f{k})")
        };
        let _ = write!(
            b.sql,
            "f{} AS (UPDATE tasks SET {set} \
             WHERE invocation_id = {invocation} AND state = 'leased' AND epoch = {epoch}{after} \
             RETURNING execution_id), ",
            k + 1
        );
        if let Some(outcome) = outcome(turn) {
            ended = Some((k + 1, outcome, now));
        }
    }
    if let Some((k, outcome, now)) = ended {
        // After the fences: commits lock a root's task before its
        // execution.
        let status = b.param(outcome.status.as_str(), "text");
        let terminal = b.param(outcome.terminal_event.as_slice(), "bytea");
        let _ = write!(
            b.sql,
            "ended AS (UPDATE executions SET status = {status}, terminal_event = {terminal}, \
             completed_at = {now} WHERE id = (SELECT execution_id FROM f{k})), "
        );
    }
    // The VALUES rows of spawned tasks and of journal rows, written as
    // their parameters are bound.
    let mut tasks = String::new();
    let mut rows = String::new();
    let sep = |list: &String| if list.is_empty() { "" } else { ", " };
    for &i in order {
        let turn = &turns[i];
        for child in &turn.spawn {
            let now = b.param(turn.now.0, "int8");
            let id = b.param(*child.invocation.as_uuid(), "uuid");
            let execution = b.param(*child.execution.as_uuid(), "uuid");
            let function = b.param(child.function.as_str(), "text");
            let queue = b.param(child.routing.queue.as_str(), "text");
            let priority = b.param(child.routing.priority, "int4");
            let tags = b.param(&child.routing.tags, "text[]");
            let run_at = b.param(child.run_at.0, "int8");
            let (state, owner, until, epoch, attempts) = if finished_here(turns, child.invocation) {
                // Born done: as its finish leaves it.
                ("done", None, None, 1, 0)
            } else {
                crate::store::lease_columns(child)
            };
            let state = b.param(state, "text");
            let owner = b.param(owner, "text");
            let until = b.param(until, "int8");
            let epoch = b.param(epoch, "int8");
            let attempts = b.param(attempts, "int4");
            let _ = write!(
                tasks,
                "{}({id}, {execution}, {function}, {queue}, {priority}, {tags}, {state}, \
                 {run_at}, {owner}, {until} - {now} + stent_clock({now}), {epoch}, {attempts})",
                sep(&tasks)
            );
            let started = b.param(child.started_event.as_slice(), "bytea");
            let _ = write!(
                rows,
                "{}({id}, 0, 'started', NULL, {started}, {now})",
                sep(&rows)
            );
        }
    }
    for &i in order {
        let turn = &turns[i];
        if turn.events.is_empty() {
            continue;
        }
        let invocation = b.param(*turn.invocation.as_uuid(), "uuid");
        let now = b.param(turn.now.0, "int8");
        for event in &turn.events {
            let seq = b.param(i64::from(event.seq.0), "int8");
            let kind = b.param(event.kind.as_str(), "text");
            let key = b.param(event.call_key.as_ref().map(|c| c.0.as_slice()), "bytea");
            let payload = b.param(event.bytes.as_slice(), "bytea");
            let _ = write!(
                rows,
                "{}({invocation}, {seq}, {kind}, {key}, {payload}, {now})",
                sep(&rows)
            );
        }
    }
    if !tasks.is_empty() {
        // Spawned tasks in creation order (their `created` numbers).
        let _ = write!(
            b.sql,
            "spawned AS (INSERT INTO tasks (invocation_id, execution_id, function, queue, \
             priority, tags, state, run_at, lease_owner, lease_until, epoch, attempts) \
             VALUES {tasks}), "
        );
    }
    if !rows.is_empty() {
        let _ = write!(
            b.sql,
            "appended AS (INSERT INTO journal \
             (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES {rows}), "
        );
    }
    let last = fenced.len();
    // The position of the first fence that did not match (the chain stops
    // there), raised with the lease lost.
    let Some(&(first, _)) = fenced.first() else {
        return Err("a commit with no fenced turn".into());
    };
    let failed =
        fenced
            .iter()
            .enumerate()
            .skip(1)
            .fold(first.to_string(), |inner, (k, &(position, _))| {
                format!("CASE WHEN EXISTS (SELECT FROM f{k}) THEN {position} ELSE {inner} END")
            });
    let _ = write!(
        b.sql,
        "done AS (SELECT 1) \
         SELECT CASE WHEN EXISTS (SELECT FROM f{last}) THEN 0 \
         ELSE stent_lease_lost({failed}) END"
    );
    match b.error {
        Some(e) => Err(e),
        None => Ok((b.sql, b.args)),
    }
}

/// Runs the statement committing `turns` in `order`.
pub(crate) async fn run(
    pool: &PgPool,
    turns: &[TurnCommit],
    order: &[usize],
) -> Result<(), sqlx::Error> {
    let (sql, args) = statement(turns, order).map_err(sqlx::Error::Encode)?;
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(pool)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use stent_journal::store::{
        Delivery, ExecutionStatus, LeaseGrant, NewEvent, NewInvocation, Routing,
    };
    use stent_journal::{EventKind, ExecutionId, Seq, Timestamp, WorkerId};

    use super::*;

    fn hold(inv: InvocationId) -> TurnCommit {
        TurnCommit::bare(
            inv,
            LeaseEpoch(1),
            Timestamp(1),
            TaskDisposition::Hold {
                lease_until: Timestamp(100),
            },
        )
    }

    fn done(inv: InvocationId) -> TurnCommit {
        TurnCommit::bare(
            inv,
            LeaseEpoch(1),
            Timestamp(1),
            TaskDisposition::Finish {
                deliver: None,
                execution: None,
            },
        )
    }

    fn events(n: u32) -> Vec<NewEvent> {
        (1..=n)
            .map(|seq| NewEvent {
                seq: Seq(seq),
                kind: EventKind::CallScheduled,
                call_key: None,
                bytes: vec![1],
            })
            .collect()
    }

    fn leased(id: InvocationId) -> NewInvocation {
        NewInvocation {
            lease: Some(LeaseGrant {
                worker: WorkerId::new("w"),
                until: Timestamp(100),
            }),
            ..child(id)
        }
    }

    fn child(id: InvocationId) -> NewInvocation {
        NewInvocation {
            invocation: id,
            execution: ExecutionId::new_random(),
            function: "app::step".into(),
            routing: Routing::default(),
            run_at: Timestamp(1),
            started_event: vec![1],
            lease: None,
        }
    }

    /// The parent's hold (two events, the next step spawned) and the
    /// finish of the previous step (one event).
    fn steady() -> Vec<TurnCommit> {
        let parent = ExecutionId::new_random().root_invocation();
        let previous = InvocationId::child_of(parent, Seq(1));
        let mut p = hold(parent);
        p.events = events(2);
        p.spawn = vec![child(InvocationId::child_of(parent, Seq(3)))];
        let mut f = done(previous);
        f.events = events(1);
        vec![p, f]
    }

    #[test]
    fn a_steady_step_fits() {
        assert!(fits(&steady()));
        assert!(fits(&steady()[..1]));
        let mut park = steady();
        park[0].disposition = TaskDisposition::Park { run_at: None };
        assert!(fits(&park));
    }

    #[test]
    fn what_the_statement_does_not_write_goes_to_the_function() {
        assert!(!fits(&[]));
        let mut three = steady();
        three.push(hold(ExecutionId::new_random().root_invocation()));
        assert!(!fits(&three));

        let mut delivers = steady();
        delivers[1].disposition = TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent: delivers[0].invocation,
                event: vec![1],
            }),
            execution: None,
        };
        assert!(!fits(&delivers));

        let mut inbox = steady();
        inbox[0].consumed_inbox = vec![stent_journal::store::InboxId(1)];
        assert!(!fits(&inbox));

        let mut twice = steady();
        twice[1].invocation = twice[0].invocation;
        assert!(!fits(&twice));

        // A task the commit spawns and also finishes: only one spawned
        // leased to this worker and finished plainly at epoch 1.
        let mut unleased = steady();
        unleased[0].spawn = vec![child(unleased[1].invocation)];
        assert!(!fits(&unleased));
        let mut born = steady();
        born[0].spawn = vec![leased(born[1].invocation)];
        assert!(fits(&born));
        born[1].epoch = LeaseEpoch(2);
        assert!(!fits(&born));

        let mut two_outcomes = steady();
        for t in &mut two_outcomes {
            t.disposition = TaskDisposition::Finish {
                deliver: None,
                execution: Some(ExecutionOutcome {
                    status: ExecutionStatus::Completed,
                    terminal_event: vec![1],
                }),
            };
        }
        assert!(!fits(&two_outcomes));
        two_outcomes[1].disposition = TaskDisposition::Finish {
            deliver: None,
            execution: None,
        };
        assert!(fits(&two_outcomes));

        let mut many_rows = steady();
        many_rows[0].events = events(MAX_ROWS as u32);
        assert!(!fits(&many_rows));

        let mut many_spawns = steady();
        let parent = many_spawns[0].invocation;
        many_spawns[0].spawn = (0..=MAX_SPAWNS as u32)
            .map(|i| child(InvocationId::child_of(parent, Seq(10 + i))))
            .collect();
        assert!(!fits(&many_spawns));
    }

    #[test]
    fn the_statement_chains_its_fences_and_raises_unless_the_last_matched() {
        let turns = steady();
        let (sql, _) = statement(&turns, &[1, 0]).unwrap();
        // The second fence runs only if the first matched, and the turn
        // named by the raise is the first whose fence did not match.
        assert!(sql.contains("f2 AS (UPDATE tasks SET lease_until"), "{sql}");
        assert!(
            sql.contains("AND EXISTS (SELECT FROM f1) RETURNING execution_id)"),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "SELECT CASE WHEN EXISTS (SELECT FROM f2) THEN 0 ELSE stent_lease_lost(\
             CASE WHEN EXISTS (SELECT FROM f1) THEN 1 ELSE 0 END) END"
            ),
            "{sql}"
        );
        // Four journal rows (three events and the step's `Started`), one
        // spawned task.
        let appended = sql.split("appended AS").nth(1).unwrap();
        assert_eq!(appended.matches("), (").count() + 1, 4, "{sql}");
        assert_eq!(sql.matches("INSERT INTO tasks").count(), 1);
    }

    #[test]
    fn a_one_step_workflow_commit_fences_the_root_only_and_ends_the_execution() {
        let root = ExecutionId::new_random().root_invocation();
        let step = InvocationId::child_of(root, Seq(1));
        let mut w = done(root);
        w.disposition = TaskDisposition::Finish {
            deliver: None,
            execution: Some(ExecutionOutcome {
                status: ExecutionStatus::Completed,
                terminal_event: vec![1],
            }),
        };
        w.events = events(2);
        w.spawn = vec![leased(step)];
        let mut s = done(step);
        s.events = events(1);
        let turns = [w, s];
        assert!(fits(&turns));
        let (sql, _) = statement(&turns, &[0, 1]).unwrap();
        assert!(!sql.contains("f2 AS"), "{sql}");
        assert!(
            sql.contains("WHERE id = (SELECT execution_id FROM f1)"),
            "{sql}"
        );
        assert!(sql.ends_with("ELSE stent_lease_lost(0) END"), "{sql}");
    }
}
