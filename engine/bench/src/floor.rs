//! The storage floor: how many transactions shaped like one sequential
//! step's commit the database takes per second when nothing but the
//! database is in the way.
//!
//! A sequential step is one commit (see docs/performance.md): the parent's
//! fenced task update, the step's task (written `done`), and four journal
//! rows — the step's `started` and `completed`, the parent's
//! `call_completed` for it and `call_scheduled` for the next step. The floor
//! writes exactly those rows, with real encoded events, into the same schema
//! (same tables, same indexes, same file settings), as one SQL script per
//! transaction: one round trip, no engine, no writer task. What a step costs
//! above this is the engine's and the driver's.

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

/// The four journal rows of step `i` and the child's id.
struct StepRows {
    child: InvocationId,
    started: Vec<u8>,
    completed: Vec<u8>,
    call_completed: Vec<u8>,
    call_scheduled: Vec<u8>,
    call_key: CallKey,
}

fn step_rows(parent: InvocationId, i: u32) -> Result<StepRows, Box<dyn std::error::Error>> {
    let seq = Seq(2 * i + 1);
    let child = InvocationId::child_of(parent, seq);
    let args = Payload::encode(&(u64::from(i),))?;
    let call_key = CallKey::new("stent_bench::noop", None, &args);
    let value = Payload::encode(&u64::from(i))?;
    Ok(StepRows {
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
        completed: Event::Completed {
            value: value.clone(),
        }
        .encode()?,
        call_completed: Event::CallCompleted {
            scheduled: Seq(2 * i.saturating_sub(1) + 1),
            value,
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

/// How the two databases spell what differs in the floor's script.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    fn blob(self, bytes: &str) -> String {
        match self {
            Dialect::Sqlite => format!("X'{bytes}'"),
            Dialect::Postgres => format!("'\\x{bytes}'"),
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

/// The script that inserts the parent's task, leased.
fn parent_task(d: Dialect, execution: ExecutionId, parent: InvocationId, now: i64) -> String {
    let (extra_columns, extra_values) = d.task_extras(1);
    format!(
        "INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, \
         state, run_at, lease_owner, lease_until, epoch, attempts{extra_columns}) \
         VALUES ('{parent}', '{execution}', 'stent_bench::sequential', 'default', 0, {tags}, \
         'leased', {now}, 'floor', {now}, 1, 0{extra_values})",
        tags = d.no_tags(),
    )
}

/// The script of step `i`'s transaction.
fn step_script(
    d: Dialect,
    execution: ExecutionId,
    parent: InvocationId,
    now: i64,
    i: u32,
) -> Result<String, Box<dyn std::error::Error>> {
    let r = step_rows(parent, i)?;
    let (extra_columns, extra_values) = d.task_extras(i64::from(i) + 2);
    Ok(format!(
        "{begin}; \
         UPDATE tasks SET lease_until = {until}, attempts = 0 \
           WHERE invocation_id = '{parent}' AND state = 'leased' AND epoch = 1; \
         INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, \
           state, run_at, lease_owner, lease_until, epoch, attempts{extra_columns}) \
           VALUES ('{child}', '{execution}', 'stent_bench::noop', 'default', 0, {tags}, \
           'done', {now}, NULL, NULL, 1, 0{extra_values}); \
         INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) VALUES \
           ('{child}', 0, 'started', NULL, {started}, {now}), \
           ('{child}', 1, 'completed', NULL, {completed}, {now}), \
           ('{parent}', {done_seq}, 'call_completed', NULL, {call_completed}, {now}), \
           ('{parent}', {next_seq}, 'call_scheduled', {key}, {call_scheduled}, {now}); \
         COMMIT;",
        begin = d.begin(),
        until = now + i64::from(i),
        child = r.child,
        tags = d.no_tags(),
        started = d.blob(&hex(&r.started)),
        completed = d.blob(&hex(&r.completed)),
        call_completed = d.blob(&hex(&r.call_completed)),
        call_scheduled = d.blob(&hex(&r.call_scheduled)),
        key = d.blob(&r.call_key.to_hex()),
        done_seq = 2 * i + 1,
        next_seq = 2 * i + 2,
    ))
}

/// Runs `n` step scripts on `conn` after the parent's task; how long the
/// steps took.
async fn run_steps<C>(
    conn: &mut C,
    d: Dialect,
    setup: String,
    n: u32,
) -> Result<Duration, Box<dyn std::error::Error>>
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    let execution = ExecutionId::new_random();
    let parent = execution.root_invocation();
    let now = Timestamp(1_700_000_000_000).0;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "{setup}{}",
        parent_task(d, execution, parent, now)
    )))
    .execute(&mut *conn)
    .await?;
    let start = Instant::now();
    for i in 0..n {
        let script = step_script(d, execution, parent, now, i)?;
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut *conn)
            .await?;
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
            let took = run_steps(&mut conn, Dialect::Sqlite, String::new(), n).await?;
            conn.close().await?;
            Ok(took)
        }
        Target::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let setup = format!("SET search_path TO \"{schema}\"; ");
            let took = run_steps(&mut conn, Dialect::Postgres, setup, n).await?;
            conn.close().await?;
            Ok(took)
        }
    }
}
