//! The storage floor: how many transactions shaped like one sequential
//! step's commit the database takes per second when nothing but the
//! database is in the way.
//!
//! A sequential step is one commit (see docs/performance.md), and in a
//! steady run of steps it writes what the floor writes, row for row: the
//! parent's fenced hold, the fenced finish of the step that just returned
//! (its task was created by the previous commit), the next step's task
//! (leased), and four journal rows: the finished step's `completed`, the
//! parent's `call_completed` for it and `call_scheduled` for the next step,
//! and the next step's `started`. Real encoded events, the same schema
//! (tables, indexes, file settings), one round trip per transaction, no
//! engine and no writer task: SQLite runs each as one script, PostgreSQL as
//! one prepared statement. What a step costs above this is the engine's and
//! the driver's.

use std::fmt::Write as _;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection};
use stent_journal::{CallKey, Event, ExecutionId, InvocationId, Payload, Seq, Timestamp};
use tokio::time::Instant;

/// Where the floor runs.
pub enum Target<'a> {
    /// A SQLite file with stent's schema, and its `PRAGMA synchronous`.
    Sqlite {
        path: &'a std::path::Path,
        synchronous: sqlx::sqlite::SqliteSynchronous,
    },
    /// A PostgreSQL schema with stent's tables.
    Postgres { url: &'a str, schema: &'a str },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Step `j` as its parent schedules it: the child's id, its `Started`
/// row, and the parent's `CallScheduled` row (at seq `2j + 1`).
struct Scheduled {
    child: InvocationId,
    started: Vec<u8>,
    call_scheduled: Vec<u8>,
    call_key: CallKey,
}

/// Step `j`'s invocation: the parent's call at seq `2j + 1`.
fn step_child(parent: InvocationId, j: u32) -> InvocationId {
    InvocationId::child_of(parent, Seq(2 * j + 1))
}

fn scheduled(parent: InvocationId, j: u32) -> Result<Scheduled, Box<dyn std::error::Error>> {
    let seq = Seq(2 * j + 1);
    let child = step_child(parent, j);
    let args = Payload::encode(&(u64::from(j),))?;
    let call_key = CallKey::new("stent_bench::noop", None, &args);
    Ok(Scheduled {
        child,
        started: Event::Started {
            function: "stent_bench::noop".into(),
            version: None,
            args: args.clone(),
            parent: Some(stent_journal::event::ParentLink {
                invocation: parent,
                seq,
            }),
            forked_from: None,
        }
        .encode()?,
        call_scheduled: Event::CallScheduled {
            function: "stent_bench::noop".into(),
            version: None,
            call_key,
            args,
            child,
        }
        .encode()?,
        call_key,
    })
}

/// What transaction `i` writes: step `i` finished (its `Completed` row, the
/// parent's `CallCompleted` at seq `2i + 2`) and step `i + 1` scheduled.
struct StepRows {
    finished: InvocationId,
    completed: Vec<u8>,
    call_completed: Vec<u8>,
    next: Scheduled,
}

fn step_rows(parent: InvocationId, i: u32) -> Result<StepRows, Box<dyn std::error::Error>> {
    let value = Payload::encode(&u64::from(i))?;
    Ok(StepRows {
        finished: step_child(parent, i),
        completed: Event::Completed {
            value: value.clone(),
        }
        .encode()?,
        call_completed: Event::CallCompleted {
            scheduled: Seq(2 * i + 1),
            value,
        }
        .encode()?,
        next: scheduled(parent, i + 1)?,
    })
}

/// How the two databases spell what differs in the floor's SQL.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn blob(self, bytes: &[u8]) -> String {
        match self {
            Dialect::Sqlite => format!("X'{}'", hex(bytes)),
            Dialect::Postgres => format!("'\\x{}'", hex(bytes)),
        }
    }

    fn no_tags(self) -> &'static str {
        match self {
            Dialect::Sqlite => "'[]'",
            Dialect::Postgres => "'{}'",
        }
    }

    /// The extra task columns SQLite fills itself (`wake`, `created`): their
    /// names and values for the `created`-th task.
    fn task_extras(self, created: i64) -> (&'static str, String) {
        match self {
            Dialect::Sqlite => (", wake, created", format!(", 0, {created}")),
            Dialect::Postgres => ("", String::new()),
        }
    }
}

/// The lease the floor's tasks hold, as the engine's hold writes it.
const LEASE_MS: i64 = 30_000;

/// The script that inserts the parent's task, leased, and schedules step 0
/// (its task leased, its `Started` row, the parent's `CallScheduled`), as
/// the workflow's first commit leaves them.
fn setup_script(
    d: Dialect,
    execution: ExecutionId,
    parent: InvocationId,
    now: i64,
) -> Result<String, Box<dyn std::error::Error>> {
    let first = scheduled(parent, 0)?;
    let (extra_columns, parent_extras) = d.task_extras(1);
    let (_, child_extras) = d.task_extras(2);
    Ok(format!(
        "INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, \
         state, run_at, lease_owner, lease_until, epoch, attempts{extra_columns}) VALUES \
         ('{parent}', '{execution}', 'stent_bench::sequential', 'default', 0, {tags}, \
          'leased', {now}, 'floor', {until}, 1, 0{parent_extras}), \
         ('{child}', '{execution}', 'stent_bench::noop', 'default', 0, {tags}, \
          'leased', {now}, 'floor', {until}, 1, 1{child_extras}); \
         INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES \
         ('{child}', 0, 'started', NULL, {started}, {now}), \
         ('{parent}', 1, 'call_scheduled', {key}, {call_scheduled}, {now});",
        child = first.child,
        tags = d.no_tags(),
        until = now + LEASE_MS,
        started = d.blob(&first.started),
        key = d.blob(&first.call_key.0),
        call_scheduled = d.blob(&first.call_scheduled),
    ))
}

/// SQLite's transaction `i`, one script: the parent's fenced hold, step
/// `i`'s fenced finish, step `i + 1`'s task (leased) and the four journal
/// rows.
fn sqlite_step_script(
    execution: ExecutionId,
    parent: InvocationId,
    now: i64,
    i: u32,
) -> Result<String, Box<dyn std::error::Error>> {
    let d = Dialect::Sqlite;
    let r = step_rows(parent, i)?;
    let (extra_columns, extra_values) = d.task_extras(i64::from(i) + 3);
    Ok(format!(
        "BEGIN IMMEDIATE; \
         UPDATE tasks SET lease_until = {until}, attempts = 0 \
           WHERE invocation_id = '{parent}' AND state = 'leased' AND epoch = 1; \
         UPDATE tasks SET state = 'done', lease_owner = NULL, lease_until = NULL, wake = 0, \
           attempts = 0 WHERE invocation_id = '{finished}' AND state = 'leased' AND epoch = 1; \
         INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, \
           state, run_at, lease_owner, lease_until, epoch, attempts{extra_columns}) \
           VALUES ('{next}', '{execution}', 'stent_bench::noop', 'default', 0, {tags}, \
           'leased', {now}, 'floor', {until}, 1, 1{extra_values}); \
         INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES \
           ('{finished}', 1, 'completed', NULL, {completed}, {now}), \
           ('{parent}', {done_seq}, 'call_completed', NULL, {call_completed}, {now}), \
           ('{parent}', {next_seq}, 'call_scheduled', {key}, {call_scheduled}, {now}), \
           ('{next}', 0, 'started', NULL, {started}, {now}); \
         COMMIT;",
        until = now + LEASE_MS + i64::from(i),
        finished = r.finished,
        next = r.next.child,
        tags = d.no_tags(),
        completed = d.blob(&r.completed),
        call_completed = d.blob(&r.call_completed),
        call_scheduled = d.blob(&r.next.call_scheduled),
        started = d.blob(&r.next.started),
        key = d.blob(&r.next.call_key.0),
        done_seq = 2 * i + 2,
        next_seq = 2 * i + 3,
    ))
}

/// PostgreSQL's transaction: the same writes as SQLite's script, as one
/// statement with parameters, prepared once by the connection and run in
/// one round trip. A script of literals would be parsed and planned on every
/// transaction, which the engine's prepared statements and its commit
/// function are not; the floor is the database's best, not a handicap.
/// It answers how many of its two fences matched.
const POSTGRES_STEP: &str = "\
WITH hold AS (
    UPDATE tasks SET lease_until = $3, attempts = 0
    WHERE invocation_id = $1 AND state = 'leased' AND epoch = 1
    RETURNING 1),
finish AS (
    UPDATE tasks SET state = 'done', lease_owner = NULL, lease_until = NULL, wake = FALSE,
        attempts = 0
    WHERE invocation_id = $4 AND state = 'leased' AND epoch = 1
    RETURNING 1),
spawn AS (
    INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, state,
        run_at, lease_owner, lease_until, epoch, attempts)
    VALUES ($5, $2, 'stent_bench::noop', 'default', 0, '{}', 'leased', $6, 'floor', $3, 1, 1)),
journal AS (
    INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES
        ($4, 1, 'completed', NULL, $7, $6),
        ($1, $8, 'call_completed', NULL, $9, $6),
        ($1, $8 + 1, 'call_scheduled', $10, $11, $6),
        ($5, 0, 'started', NULL, $12, $6))
SELECT (SELECT COUNT(*) FROM hold) + (SELECT COUNT(*) FROM finish)";

/// Writes the setup (see [`setup_script`]) for a new execution on `conn`;
/// the execution, its root invocation and the time every row carries.
async fn set_up<C>(
    conn: &mut C,
    d: Dialect,
) -> Result<(ExecutionId, InvocationId, i64), Box<dyn std::error::Error>>
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    let execution = ExecutionId::new_random();
    let parent = execution.root_invocation();
    let now = Timestamp(1_700_000_000_000).0;
    sqlx::raw_sql(AssertSqlSafe(setup_script(d, execution, parent, now)?))
        .execute(&mut *conn)
        .await?;
    Ok((execution, parent, now))
}

/// Runs `n` step transactions on a SQLite connection after the setup;
/// how long the steps took.
async fn run_sqlite(
    conn: &mut sqlx::SqliteConnection,
    n: u32,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let (execution, parent, now) = set_up(conn, Dialect::Sqlite).await?;
    let start = Instant::now();
    for i in 0..n {
        let script = sqlite_step_script(execution, parent, now, i)?;
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut *conn)
            .await?;
    }
    Ok(start.elapsed())
}

/// Runs `n` step transactions on a PostgreSQL connection whose search path
/// is the schema; how long the steps took.
async fn run_postgres(
    conn: &mut sqlx::PgConnection,
    n: u32,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let (execution, parent, now) = set_up(conn, Dialect::Postgres).await?;
    // Rows built ahead, so the timed loop is the database's.
    let rows = (0..n)
        .map(|i| step_rows(parent, i))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for (i, r) in (0..n).zip(&rows) {
        let fenced: i64 = sqlx::query_scalar(POSTGRES_STEP)
            .bind(*parent.as_uuid())
            .bind(*execution.as_uuid())
            .bind(now + LEASE_MS + i64::from(i))
            .bind(*r.finished.as_uuid())
            .bind(*r.next.child.as_uuid())
            .bind(now)
            .bind(r.completed.as_slice())
            .bind(i64::from(2 * i + 2))
            .bind(r.call_completed.as_slice())
            .bind(r.next.call_key.0.as_slice())
            .bind(r.next.call_scheduled.as_slice())
            .bind(r.next.started.as_slice())
            .fetch_one(&mut *conn)
            .await?;
        if fenced != 2 {
            return Err(format!("floor transaction {i}: {fenced} of its 2 fences matched").into());
        }
    }
    Ok(start.elapsed())
}

/// Commits `n` step-shaped transactions on `target` and returns how long
/// they took.
pub async fn measure(target: Target<'_>, n: u32) -> Result<Duration, Box<dyn std::error::Error>> {
    match target {
        Target::Sqlite { path, synchronous } => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(synchronous);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            let took = run_sqlite(&mut conn, n).await?;
            conn.close().await?;
            Ok(took)
        }
        Target::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO \"{schema}\"")))
                .execute(&mut conn)
                .await?;
            let took = run_postgres(&mut conn, n).await?;
            conn.close().await?;
            Ok(took)
        }
    }
}
