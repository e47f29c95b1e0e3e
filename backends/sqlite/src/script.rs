//! Statements sent to SQLite as one query.
//!
//! sqlx runs every query on the connection's own thread: each query is a
//! hand-off from the async task to that thread and back, and on an idle
//! machine each hand-off waits for a sleeping core — more than a small
//! statement costs (docs/performance.md measures it). So the writer queues
//! the statements of a group whose results it needs only as "succeeded" in a
//! [`Script`], and sends them in one query with the next statement whose
//! result it reads (a fence's rows) or with the group's `COMMIT`.
//!
//! SQLite binds a multi-statement query's values statement by statement, in
//! order, when its placeholders are plain `?` (numbered ones, `?NNN`, count
//! from the start of the whole query); every statement queued here uses `?`.
//! Preparing several statements from one string is what SQLite's own
//! interface does and what sqlx's SQLite driver supports (no other of its
//! drivers does, and sqlx discourages relying on it: launchbadge/sqlx#3108);
//! the tests below pin the behaviour this module needs, so an upgrade that
//! drops it fails here.

use futures_util::TryStreamExt;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Either, Encode, Executor, Sqlite, Type};

/// Statements and their values, run in order as one query.
#[derive(Default)]
pub(crate) struct Script {
    sql: String,
    args: SqliteArguments,
    statements: usize,
    /// The first value that could not be bound; reported when the script runs.
    bind_error: Option<BoxDynError>,
}

/// Why a script failed, and where.
#[derive(Debug)]
pub(crate) struct ScriptFailure {
    /// The statement that failed, counted from 0; `None` if a value could
    /// not be bound and nothing ran.
    pub(crate) statement: Option<usize>,
    pub(crate) error: sqlx::Error,
}

impl Script {
    /// Appends `statement`; its values follow with [`bind`](Self::bind).
    pub(crate) fn push(&mut self, statement: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(statement);
        self.statements += 1;
    }

    /// Binds the next `?` of the statements pushed.
    pub(crate) fn bind<'t, T>(&mut self, value: T)
    where
        T: Encode<'t, Sqlite> + Type<Sqlite>,
    {
        if let Err(error) = self.args.add(value)
            && self.bind_error.is_none()
        {
            self.bind_error = Some(error);
        }
    }

    /// Binds NULL to the unused rows of a batched statement for `rows` rows
    /// of `columns` values (see [`crate::sql::batch_size`]).
    pub(crate) fn pad(&mut self, rows: usize, columns: usize) {
        for _ in rows * columns..crate::sql::batch_size(rows) * columns {
            self.bind(None::<i64>);
        }
    }

    /// How many statements are queued.
    pub(crate) fn len(&self) -> usize {
        self.statements
    }

    /// True if no statement is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// Runs the queued statements as one query and empties the script; the
    /// rows they returned, in order. Stops at the first statement that fails.
    pub(crate) async fn run(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<SqliteRow>, ScriptFailure> {
        let Script {
            sql,
            args,
            statements,
            bind_error,
        } = std::mem::take(self);
        if statements == 0 {
            return Ok(Vec::new());
        }
        if let Some(error) = bind_error {
            return Err(ScriptFailure {
                statement: None,
                error: sqlx::Error::Encode(error),
            });
        }
        let query = sqlx::query_with(AssertSqlSafe(sql), args);
        let mut results = conn.fetch_many(query);
        let mut done = 0;
        let mut rows = Vec::new();
        loop {
            match results.try_next().await {
                Ok(Some(Either::Left(_))) => done += 1,
                Ok(Some(Either::Right(row))) => rows.push(row),
                Ok(None) => return Ok(rows),
                Err(error) => {
                    return Err(ScriptFailure {
                        statement: Some(done),
                        error,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Row};

    async fn conn() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("open");
        sqlx::query("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
            .execute(&mut conn)
            .await
            .expect("create");
        conn
    }

    #[tokio::test]
    async fn values_bind_statement_by_statement_and_rows_come_back_in_order() {
        let mut conn = conn().await;
        let mut script = Script::default();
        script.push("INSERT INTO t (a, b) VALUES (?, ?)");
        script.bind(1i64);
        script.bind("one");
        script.push("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
        for (a, b) in [(2i64, "two"), (3, "three")] {
            script.bind(a);
            script.bind(b);
        }
        script.push("UPDATE t SET b = b || ? WHERE a >= ? RETURNING a, b");
        script.bind("!");
        script.bind(2i64);
        assert_eq!(script.len(), 3);
        let mut rows: Vec<(i64, String)> = script
            .run(&mut conn)
            .await
            .expect("runs")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        rows.sort();
        assert_eq!(rows, [(2, "two!".to_string()), (3, "three!".to_string())]);
        assert!(script.is_empty(), "run empties the script");
        let b: String = sqlx::query_scalar("SELECT b FROM t WHERE a = 1")
            .fetch_one(&mut conn)
            .await
            .expect("read");
        assert_eq!(b, "one");
    }

    #[tokio::test]
    async fn a_failure_names_its_statement_and_stops_the_rest() {
        let mut conn = conn().await;
        let mut script = Script::default();
        script.push("INSERT INTO t (a, b) VALUES (?, 'x')");
        script.bind(1i64);
        script.push("INSERT INTO t (a, b) VALUES (?, 'y')");
        script.bind(1i64);
        script.push("INSERT INTO t (a, b) VALUES (?, 'z')");
        script.bind(2i64);
        let failure = script.run(&mut conn).await.expect_err("duplicate key");
        assert_eq!(failure.statement, Some(1));
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(count, 1, "the statement after the failure did not run");
    }

    #[tokio::test]
    async fn an_empty_script_runs_nothing() {
        let mut conn = conn().await;
        let rows = Script::default().run(&mut conn).await.expect("nothing");
        assert!(rows.is_empty());
    }
}
