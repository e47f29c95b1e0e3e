//! The records SQL backends read back, built once for every database.
//!
//! A backend wraps its row type in a [`Columns`] view, which reads one
//! column its own way (ids as `UUID` or text, tags as an array or JSON, a
//! PostgreSQL `INTEGER` as `i32`); the functions here say which column
//! holds what, check ranges and parse states, so a column added to a record
//! is read in one place. Every failure is [`StoreError::Corrupt`], naming
//! the table and column.

use uuid::Uuid;

use crate::store::{
    ClaimedTask, DeadLetterRecord, ExecutionRecord, ExecutionStatus, JournalRow, Routing, SignalId,
    SignalRecord, StoreError, StoreResult, TaskRecord, TaskState,
};
use crate::{ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};

/// One database row as stent's column types. `table` only names the
/// column in errors.
pub trait Columns {
    /// A `TEXT` column.
    fn text(&self, table: &str, column: &str) -> StoreResult<String>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, table: &str, column: &str) -> StoreResult<Option<String>>;
    /// A `BIGINT` column.
    fn int(&self, table: &str, column: &str) -> StoreResult<i64>;
    /// An `INTEGER` column (32 bits where the database has them).
    fn small_int(&self, table: &str, column: &str) -> StoreResult<i64>;
    /// A nullable `BIGINT` column.
    fn opt_int(&self, table: &str, column: &str) -> StoreResult<Option<i64>>;
    /// A `BYTEA` / `BLOB` column.
    fn bytes(&self, table: &str, column: &str) -> StoreResult<Vec<u8>>;
    /// A nullable `BYTEA` / `BLOB` column.
    fn opt_bytes(&self, table: &str, column: &str) -> StoreResult<Option<Vec<u8>>>;
    /// An id column.
    fn uuid(&self, table: &str, column: &str) -> StoreResult<Uuid>;
    /// The `tags` column.
    fn tags(&self, table: &str) -> StoreResult<Vec<String>>;
}

/// `v`, read from `table.column`, as a `T`, or why not.
pub fn ranged<T: TryFrom<i64>>(v: i64, table: &str, column: &str) -> StoreResult<T> {
    T::try_from(v).map_err(|_| {
        StoreError::Corrupt(format!("{table}.{column} holds {v}, which is out of range"))
    })
}

fn time(row: &impl Columns, table: &str, column: &str) -> StoreResult<Option<Timestamp>> {
    Ok(row.opt_int(table, column)?.map(Timestamp))
}

fn routing(row: &impl Columns, table: &str) -> StoreResult<Routing> {
    Ok(Routing {
        queue: row.text(table, "queue")?,
        priority: ranged(row.small_int(table, "priority")?, table, "priority")?,
        tags: row.tags(table)?,
    })
}

/// The `status` column of an `executions` row.
pub fn execution_status(row: &impl Columns) -> StoreResult<ExecutionStatus> {
    let status = row.text("executions", "status")?;
    ExecutionStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("executions.status holds unknown status {status:?}"))
    })
}

/// An `executions` row.
pub fn execution_record(row: &impl Columns) -> StoreResult<ExecutionRecord> {
    const T: &str = "executions";
    Ok(ExecutionRecord {
        id: ExecutionId::from_uuid(row.uuid(T, "id")?),
        function: row.text(T, "function")?,
        status: execution_status(row)?,
        routing: routing(row, T)?,
        created_at: Timestamp(row.int(T, "created_at")?),
        started_at: time(row, T, "started_at")?,
        completed_at: time(row, T, "completed_at")?,
        deadline: time(row, T, "deadline")?,
        terminal_event: row.opt_bytes(T, "terminal_event")?,
        pause_report: row.opt_text(T, "pause_report")?,
        code_version: row.opt_text(T, "code_version")?,
        retries: ranged(row.int(T, "retries")?, T, "retries")?,
    })
}

/// A `dead_letters` row.
pub fn dead_letter_record(row: &impl Columns) -> StoreResult<DeadLetterRecord> {
    const T: &str = "dead_letters";
    Ok(DeadLetterRecord {
        task: InvocationId::from_uuid(row.uuid(T, "task_id")?),
        execution: ExecutionId::from_uuid(row.uuid(T, "execution_id")?),
        function: row.text(T, "function")?,
        queue: row.text(T, "queue")?,
        reason: row.text(T, "reason")?,
        retries: ranged(row.small_int(T, "retries")?, T, "retries")?,
        failed_at: Timestamp(row.int(T, "failed_at")?),
    })
}

/// A `journal` row.
pub fn journal_row(row: &impl Columns) -> StoreResult<JournalRow> {
    const T: &str = "journal";
    Ok(JournalRow {
        seq: Seq(ranged(row.int(T, "seq")?, T, "seq")?),
        kind: row.text(T, "kind")?,
        bytes: row.bytes(T, "payload")?,
        recorded_at: Timestamp(row.int(T, "recorded_at")?),
    })
}

/// A `tasks` row, with its last failure.
pub fn task_record(row: &impl Columns) -> StoreResult<TaskRecord> {
    const T: &str = "tasks";
    let state = row.text(T, "state")?;
    let state = TaskState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("tasks.state holds unknown state {state:?}")))?;
    Ok(TaskRecord {
        invocation: InvocationId::from_uuid(row.uuid(T, "invocation_id")?),
        execution: ExecutionId::from_uuid(row.uuid(T, "execution_id")?),
        function: row.text(T, "function")?,
        routing: routing(row, T)?,
        state,
        run_at: Timestamp(row.int(T, "run_at")?),
        lease_owner: row.opt_text(T, "lease_owner")?.map(WorkerId::new),
        lease_until: time(row, T, "lease_until")?,
        epoch: LeaseEpoch(row.int(T, "epoch")?),
        attempts: ranged(row.small_int(T, "attempts")?, T, "attempts")?,
        retries: ranged(row.small_int(T, "retries")?, T, "retries")?,
        last_failure: match (
            time(row, T, "last_failed_at")?,
            row.opt_text(T, "last_error")?,
        ) {
            (Some(at), Some(error)) => Some((at, error)),
            _ => None,
        },
    })
}

/// A claimed `tasks` row, with its execution's `deadline`.
pub fn claimed_task(row: &impl Columns) -> StoreResult<ClaimedTask> {
    const T: &str = "tasks";
    Ok(ClaimedTask {
        invocation: InvocationId::from_uuid(row.uuid(T, "invocation_id")?),
        execution: ExecutionId::from_uuid(row.uuid(T, "execution_id")?),
        function: row.text(T, "function")?,
        epoch: LeaseEpoch(row.int(T, "epoch")?),
        attempts: ranged(row.small_int(T, "attempts")?, T, "attempts")?,
        retries: ranged(row.small_int(T, "retries")?, T, "retries")?,
        deadline: time(row, "executions", "deadline")?,
    })
}

/// A `signals` row (`id`, `name`, `payload`).
pub fn signal_record(row: &impl Columns) -> StoreResult<SignalRecord> {
    const T: &str = "signals";
    Ok(SignalRecord {
        id: SignalId(row.int(T, "id")?),
        name: row.text(T, "name")?,
        payload: row.bytes(T, "payload")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A row of named values, as a database would hand them out.
    #[derive(Default)]
    struct Row(HashMap<&'static str, Option<String>>);

    impl Row {
        fn with(mut self, column: &'static str, value: Option<&str>) -> Row {
            self.0.insert(column, value.map(str::to_string));
            self
        }

        fn get(&self, table: &str, column: &str) -> StoreResult<Option<String>> {
            self.0
                .get(column)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("{table}.{column}: no such column")))
        }

        fn need(&self, table: &str, column: &str) -> StoreResult<String> {
            self.get(table, column)?
                .ok_or_else(|| StoreError::Corrupt(format!("{table}.{column} is NULL")))
        }
    }

    fn int_of(text: &str, table: &str, column: &str) -> StoreResult<i64> {
        text.parse()
            .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: {e}")))
    }

    impl Columns for Row {
        fn text(&self, table: &str, column: &str) -> StoreResult<String> {
            self.need(table, column)
        }
        fn opt_text(&self, table: &str, column: &str) -> StoreResult<Option<String>> {
            self.get(table, column)
        }
        fn int(&self, table: &str, column: &str) -> StoreResult<i64> {
            int_of(&self.need(table, column)?, table, column)
        }
        fn small_int(&self, table: &str, column: &str) -> StoreResult<i64> {
            self.int(table, column)
        }
        fn opt_int(&self, table: &str, column: &str) -> StoreResult<Option<i64>> {
            self.get(table, column)?
                .map(|t| int_of(&t, table, column))
                .transpose()
        }
        fn bytes(&self, table: &str, column: &str) -> StoreResult<Vec<u8>> {
            Ok(self.need(table, column)?.into_bytes())
        }
        fn opt_bytes(&self, table: &str, column: &str) -> StoreResult<Option<Vec<u8>>> {
            Ok(self.get(table, column)?.map(String::into_bytes))
        }
        fn uuid(&self, table: &str, column: &str) -> StoreResult<Uuid> {
            self.need(table, column)?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: {e}")))
        }
        fn tags(&self, table: &str) -> StoreResult<Vec<String>> {
            Ok(self
                .need(table, "tags")?
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect())
        }
    }

    fn task_row() -> Row {
        let id = "00000000-0000-0000-0000-00000000000a";
        Row::default()
            .with("invocation_id", Some(id))
            .with("execution_id", Some(id))
            .with("function", Some("app::step"))
            .with("queue", Some("default"))
            .with("priority", Some("-3"))
            .with("tags", Some("gpu,eu"))
            .with("state", Some("leased"))
            .with("run_at", Some("10"))
            .with("lease_owner", Some("w1"))
            .with("lease_until", Some("20"))
            .with("epoch", Some("2"))
            .with("attempts", Some("1"))
            .with("retries", Some("0"))
            .with("last_failed_at", None)
            .with("last_error", Some("ignored without a time"))
    }

    #[test]
    fn a_task_row_reads_as_its_record() {
        let task = task_record(&task_row()).unwrap();
        assert_eq!(task.routing.priority, -3);
        assert_eq!(task.routing.tags, ["gpu", "eu"]);
        assert_eq!(task.state, TaskState::Leased);
        assert_eq!(task.lease_until, Some(Timestamp(20)));
        assert_eq!(task.epoch, LeaseEpoch(2));
        assert_eq!(task.last_failure, None);
    }

    #[test]
    fn bad_values_name_their_table_and_column() {
        let err = task_record(&task_row().with("state", Some("melted"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"stored data is corrupt: tasks.state holds unknown state "melted""#
        );
        let err = task_record(&task_row().with("attempts", Some("-1"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("tasks.attempts holds -1, which is out of range"),
            "{err}"
        );
        let big = (i64::from(i32::MAX) + 1).to_string();
        let err = task_record(&task_row().with("priority", Some(&big))).unwrap_err();
        assert!(err.to_string().contains("tasks.priority holds"), "{err}");
    }
}
