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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe};
use stent_journal::plan::Effect;
use stent_journal::store::{ExecutionOutcome, NewInvocation, TaskDisposition, TurnCommit};
use stent_journal::{InvocationId, LeaseEpoch};

use crate::held::Keeper;

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
/// is the value bound n-th. The text is written only when `sql` is
/// `Some`: the same walk over the turns binds the parameters of a statement
/// whose text is already known ([`TEXTS`]), in the same order.
struct Builder {
    sql: Option<String>,
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

/// Appends to a text being written, if one is (`Option<String>`).
macro_rules! text {
    ($to:expr, $($fmt:tt)*) => {
        if let Some(to) = $to.as_mut() {
            let _ = write!(to, $($fmt)*);
        }
    };
}

/// Whether one of `turns` is the turn of `invocation`: a task spawned and
/// finished in the same commit (born done).
fn finished_here(turns: &[TurnCommit], invocation: InvocationId) -> bool {
    turns.iter().any(|t| t.invocation == invocation)
}

/// What the statement's text follows of one turn; every other value is a
/// parameter.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct TurnShape {
    /// Not a task born in this commit: the turn has a fence.
    fenced: bool,
    /// Hold, park or done (not the times they carry: parameters).
    disposition: std::mem::Discriminant<Disposition>,
    ends_execution: bool,
    spawns: usize,
    events: usize,
}

/// What a commit's statement text follows: its turns' shapes, in order.
type Shape = [Option<TurnShape>; MAX_TURNS];

fn shape(turns: &[TurnCommit], order: &[usize]) -> Option<Shape> {
    let mut shape = [None; MAX_TURNS];
    for (slot, &i) in order.iter().enumerate() {
        let turn = &turns[i];
        *shape.get_mut(slot)? = Some(TurnShape {
            fenced: spawned(turns, turn.invocation).is_none(),
            disposition: std::mem::discriminant(&disposition(turn)?),
            ends_execution: outcome(turn).is_some(),
            spawns: turn.spawn.len(),
            events: turn.events.len(),
        });
    }
    Some(shape)
}

/// The statement texts written so far, by shape: a text follows only its
/// shape ([`fits`] keeps the shapes few), so each is written once per
/// process and commits of a known shape only bind their parameters.
static TEXTS: OnceLock<Mutex<HashMap<Shape, Arc<str>>>> = OnceLock::new();

/// The statement committing `turns` (which [`fits`] accepted), in `order`
/// (invocation id order), with its parameters.
pub(crate) fn statement(
    turns: &[TurnCommit],
    order: &[usize],
) -> Result<(Arc<str>, PgArguments), sqlx::error::BoxDynError> {
    let shape = shape(turns, order).ok_or("a turn the generated statement does not take")?;
    let texts = TEXTS.get_or_init(Mutex::default);
    let known = texts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&shape)
        .cloned();
    let (sql, args) = write(turns, order, known.is_none())?;
    match (known, sql) {
        (Some(text), _) => Ok((text, args)),
        (None, Some(sql)) => {
            let text: Arc<str> = sql.into();
            texts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(shape, text.clone());
            Ok((text, args))
        }
        (None, None) => Err("the statement's text was not written".into()),
    }
}

/// Binds the parameters of the statement committing `turns` in `order`,
/// and writes its text if `with_text`.
fn write(
    turns: &[TurnCommit],
    order: &[usize],
    with_text: bool,
) -> Result<(Option<String>, PgArguments), sqlx::error::BoxDynError> {
    let mut b = Builder {
        sql: with_text.then(|| String::with_capacity(2048)),
        args: PgArguments::default(),
        error: None,
    };
    text!(b.sql, "WITH ");
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
        text!(b.sql, "f{} AS (UPDATE tasks SET ", k + 1);
        match disposition(turn).ok_or("a turn the generated statement does not take")? {
            Disposition::Hold(until) => {
                let until = b.param(until, "int8");
                text!(
                    b.sql,
                    "lease_until = {until} - {now} + stent_clock({now}), attempts = 0"
                );
            }
            Disposition::Park(run_at) => {
                let run_at = b.param(run_at, "int8");
                text!(
                    b.sql,
                    "state = CASE WHEN wake OR {run_at} IS NOT NULL THEN 'ready' ELSE 'waiting' END, \
                     run_at = CASE WHEN wake THEN {now} WHEN {run_at} IS NOT NULL THEN {run_at} \
                     ELSE run_at END, \
                     lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0"
                );
            }
            Disposition::Done => text!(
                b.sql,
                "state = 'done', lease_owner = NULL, lease_until = NULL, wake = FALSE, \
                 attempts = 0"
            ),
        }
        let invocation = b.param(*turn.invocation.as_uuid(), "uuid");
        let epoch = b.param(turn.epoch.0, "int8");
        text!(
            b.sql,
            " WHERE invocation_id = {invocation} AND state = 'leased' AND epoch = {epoch}"
        );
        // The fence, chained to the previous one.
        if k > 0 {
            text!(b.sql, " AND EXISTS (SELECT FROM f{k})");
        }
        text!(b.sql, " RETURNING execution_id), ");
        if let Some(outcome) = outcome(turn) {
            ended = Some((k + 1, outcome, now));
        }
    }
    if let Some((k, outcome, now)) = ended {
        // After the fences: commits lock a root's task before its
        // execution.
        let status = b.param(outcome.status.as_str(), "text");
        let terminal = b.param(outcome.terminal_event.as_slice(), "bytea");
        text!(
            b.sql,
            "ended AS (UPDATE executions SET status = {status}, terminal_event = {terminal}, \
             completed_at = {now} WHERE id = (SELECT execution_id FROM f{k})), "
        );
    }
    // The VALUES rows of spawned tasks and of journal rows, written as
    // their parameters are bound.
    let mut tasks = with_text.then(String::new);
    let mut rows = with_text.then(String::new);
    let sep = |list: &Option<String>| match list {
        Some(list) if !list.is_empty() => ", ",
        _ => "",
    };
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
            let comma = sep(&tasks);
            text!(
                tasks,
                "{comma}({id}, {execution}, {function}, {queue}, {priority}, {tags}, {state}, \
                 {run_at}, {owner}, {until} - {now} + stent_clock({now}), {epoch}, {attempts})"
            );
            let started = b.param(child.started_event.as_slice(), "bytea");
            let comma = sep(&rows);
            text!(rows, "{comma}({id}, 0, 'started', NULL, {started}, {now})");
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
            let comma = sep(&rows);
            text!(
                rows,
                "{comma}({invocation}, {seq}, {kind}, {key}, {payload}, {now})"
            );
        }
    }
    if let (Some(sql), Some(tasks), Some(rows)) = (b.sql.as_mut(), tasks, rows) {
        if !tasks.is_empty() {
            // Spawned tasks in creation order (their `created` numbers).
            let _ = write!(
                sql,
                "spawned AS (INSERT INTO tasks (invocation_id, execution_id, function, queue, \
                 priority, tags, state, run_at, lease_owner, lease_until, epoch, attempts) \
                 VALUES {tasks}), "
            );
        }
        if !rows.is_empty() {
            let _ = write!(
                sql,
                "appended AS (INSERT INTO journal \
                 (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES {rows}), "
            );
        }
        let last = fenced.len();
        // The position of the first fence that did not match (the chain
        // stops there), raised with the lease lost.
        let Some(&(first, _)) = fenced.first() else {
            return Err("a commit with no fenced turn".into());
        };
        let failed = fenced.iter().enumerate().skip(1).fold(
            first.to_string(),
            |inner, (k, &(position, _))| {
                format!("CASE WHEN EXISTS (SELECT FROM f{k}) THEN {position} ELSE {inner} END")
            },
        );
        let _ = write!(
            sql,
            "done AS (SELECT 1) \
             SELECT CASE WHEN EXISTS (SELECT FROM f{last}) THEN 0 \
             ELSE stent_lease_lost({failed}) END"
        );
    }
    match b.error {
        Some(e) => Err(e),
        None => Ok((b.sql, b.args)),
    }
}

/// Runs the statement committing `turns` in `order`.
pub(crate) async fn run(
    keeper: &Arc<Keeper>,
    turns: &[TurnCommit],
    order: &[usize],
) -> Result<(), sqlx::Error> {
    let (sql, args) = statement(turns, order).map_err(sqlx::Error::Encode)?;
    keeper
        .execute(sqlx::query_with(AssertSqlSafe(sql), args))
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

    /// Commits of one shape share a text; one of another shape gets its own.
    /// A text taken from those written before binds, in the same order, the
    /// parameters a freshly written one would.
    #[test]
    fn commits_of_a_known_shape_reuse_its_text_and_bind_the_same_parameters() {
        let mut born = steady();
        born[0].spawn = vec![leased(born[1].invocation)];
        let mut parked = steady();
        parked[0].disposition = TaskDisposition::Park {
            run_at: Some(Timestamp(9)),
        };
        let mut other_values = steady();
        for t in &mut other_values {
            t.now = Timestamp(77);
            t.epoch = LeaseEpoch(5);
        }
        other_values[0].events[0].bytes = vec![9; 300];
        for (turns, order) in [
            (steady(), [1, 0]),
            (steady(), [0, 1]),
            (born.clone(), [0, 1]),
            (parked.clone(), [1, 0]),
            (other_values.clone(), [1, 0]),
        ] {
            let (fresh, fresh_args) = write(&turns, &order, true).unwrap();
            let (none, args) = write(&turns, &order, false).unwrap();
            assert!(none.is_none());
            assert_eq!(args.len(), fresh_args.len());
            let (first, _) = statement(&turns, &order).unwrap();
            let (again, _) = statement(&turns, &order).unwrap();
            assert_eq!(Some(&*first), fresh.as_deref());
            assert!(Arc::ptr_eq(&first, &again));
        }
        let text = |turns: &[TurnCommit], order: [usize; 2]| statement(turns, &order).unwrap().0;
        assert!(Arc::ptr_eq(
            &text(&steady(), [1, 0]),
            &text(&other_values, [1, 0])
        ));
        assert_ne!(text(&steady(), [1, 0]), text(&steady(), [0, 1]));
        assert_ne!(text(&steady(), [1, 0]), text(&parked, [1, 0]));
        assert_ne!(text(&steady(), [0, 1]), text(&born, [0, 1]));
    }
}
