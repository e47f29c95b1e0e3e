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

/// Commits `n` step-shaped transactions on `target` and returns how long
/// they took.
pub async fn measure(target: Target<'_>, n: u32) -> Result<Duration, Box<dyn std::error::Error>> {
    let execution = ExecutionId::new_random();
    let parent = execution.root_invocation();
    let now = Timestamp(1_700_000_000_000).0;
    match target {
        Target::Sqlite { path, synchronous } => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(synchronous);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, \
                 tags, state, run_at, lease_owner, lease_until, epoch, attempts, wake, created) \
                 VALUES ('{parent}', '{execution}', 'stent_bench::sequential', 'default', 0, \
                 '[]', 'leased', {now}, 'floor', {now}, 1, 0, 0, 1)"
            )))
            .execute(&mut conn)
            .await?;
            let start = Instant::now();
            for i in 0..n {
                let r = step_rows(parent, i)?;
                let script = format!(
                    "BEGIN IMMEDIATE; \
                     UPDATE tasks SET lease_until = {until}, attempts = 0 \
                       WHERE invocation_id = '{parent}' AND state = 'leased' AND epoch = 1; \
                     INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, \
                       tags, state, run_at, lease_owner, lease_until, epoch, attempts, wake, \
                       created) VALUES ('{child}', '{execution}', 'stent_bench::noop', \
                       'default', 0, '[]', 'done', {now}, NULL, NULL, 1, 0, 0, {created}); \
                     INSERT INTO journal (invocation_id, seq, kind, call_key, payload, \
                       recorded_at) VALUES \
                       ('{child}', 0, 'started', NULL, X'{started}', {now}), \
                       ('{child}', 1, 'completed', NULL, X'{completed}', {now}), \
                       ('{parent}', {done_seq}, 'call_completed', NULL, X'{call_completed}', {now}), \
                       ('{parent}', {next_seq}, 'call_scheduled', X'{key}', X'{call_scheduled}', \
                        {now}); \
                     COMMIT;",
                    until = now + i64::from(i),
                    child = r.child,
                    created = i64::from(i) + 2,
                    started = hex(&r.started),
                    completed = hex(&r.completed),
                    call_completed = hex(&r.call_completed),
                    call_scheduled = hex(&r.call_scheduled),
                    key = r.call_key.to_hex(),
                    done_seq = 2 * i + 1,
                    next_seq = 2 * i + 2,
                );
                sqlx::raw_sql(AssertSqlSafe(script))
                    .execute(&mut conn)
                    .await?;
            }
            let took = start.elapsed();
            conn.close().await?;
            Ok(took)
        }
        Target::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET search_path TO \"{schema}\"; \
                 INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, \
                 tags, state, run_at, lease_owner, lease_until, epoch, attempts) \
                 VALUES ('{parent}', '{execution}', 'stent_bench::sequential', 'default', 0, \
                 '{{}}', 'leased', {now}, 'floor', {now}, 1, 0)"
            )))
            .execute(&mut conn)
            .await?;
            let start = Instant::now();
            for i in 0..n {
                let r = step_rows(parent, i)?;
                let script = format!(
                    "BEGIN; \
                     UPDATE tasks SET lease_until = {until}, attempts = 0 \
                       WHERE invocation_id = '{parent}' AND state = 'leased' AND epoch = 1; \
                     INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, \
                       tags, state, run_at, lease_owner, lease_until, epoch, attempts) \
                       VALUES ('{child}', '{execution}', 'stent_bench::noop', 'default', 0, \
                       '{{}}', 'done', {now}, NULL, NULL, 1, 0); \
                     INSERT INTO journal (invocation_id, seq, kind, call_key, payload, \
                       recorded_at) VALUES \
                       ('{child}', 0, 'started', NULL, '\\x{started}', {now}), \
                       ('{child}', 1, 'completed', NULL, '\\x{completed}', {now}), \
                       ('{parent}', {done_seq}, 'call_completed', NULL, '\\x{call_completed}', \
                        {now}), \
                       ('{parent}', {next_seq}, 'call_scheduled', '\\x{key}', \
                        '\\x{call_scheduled}', {now}); \
                     COMMIT;",
                    until = now + i64::from(i),
                    child = r.child,
                    started = hex(&r.started),
                    completed = hex(&r.completed),
                    call_completed = hex(&r.call_completed),
                    call_scheduled = hex(&r.call_scheduled),
                    key = r.call_key.to_hex(),
                    done_seq = 2 * i + 1,
                    next_seq = 2 * i + 2,
                );
                sqlx::raw_sql(AssertSqlSafe(script))
                    .execute(&mut conn)
                    .await?;
            }
            let took = start.elapsed();
            conn.close().await?;
            Ok(took)
        }
    }
}
