//! Statements sent to SQLite in as few queries as they can.
//!
//! sqlx runs every query on the connection's own thread: each query is a
//! hand-off from the async task to that thread and back, and on an idle
//! machine each hand-off waits for a sleeping core — more than a small
//! statement costs (docs/performance.md measures it). So the writer queues
//! the statements of a group whose results it needs only as "succeeded" in a
//! [`Script`], and sends them with the next statement whose result it reads
//! (a fence's rows) or with the group's `COMMIT`: one query, or a few for a
//! large group (see [`SHARED_ROWS_MAX`]).
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

/// Statements and their values, run in order, as one query where they can.
#[derive(Default)]
pub(crate) struct Script {
    /// The queries to send, in order; values go to the last.
    queries: Vec<Query>,
    statements: usize,
    /// The last query takes no more statements.
    closed: bool,
    /// The first value that could not be bound; reported when the script runs.
    bind_error: Option<BoxDynError>,
}

/// Statements sent together.
#[derive(Default)]
struct Query {
    sql: String,
    args: SqliteArguments,
    statements: usize,
}

/// Most rows a batched statement may have and still share its query, and
/// most statements in one query.
///
/// sqlx prepares each distinct query once and keeps it (see
/// `WRITER_STATEMENT_CACHE`), so every way a group's statements combine is
/// one more prepared statement kept: a large group (hundreds of turns and
/// creates) as one query would be a new and large one almost every time. So
/// a large multi-row statement goes alone, prepared once per size as without
/// scripts, and a query takes at most [`STATEMENTS_PER_QUERY_MAX`]
/// statements. The groups that gain most (one step, one create) fit in one
/// query; a large group shares its hand-offs among many rows anyway.
pub(crate) const SHARED_ROWS_MAX: usize = 8;

/// Most statements in one query (see [`SHARED_ROWS_MAX`]): a one-step
/// workflow's final commit is eight.
pub(crate) const STATEMENTS_PER_QUERY_MAX: usize = 8;

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
        match self.queries.last_mut() {
            Some(query) if !self.closed && query.statements < STATEMENTS_PER_QUERY_MAX => {
                query.sql.push_str(";\n");
                query.sql.push_str(statement);
                query.statements += 1;
            }
            _ => self.queries.push(Query {
                sql: statement.to_string(),
                args: SqliteArguments::default(),
                statements: 1,
            }),
        }
        self.closed = false;
        self.statements += 1;
    }

    /// Appends a batched statement for `rows` rows (see
    /// [`crate::sql::batch_size`]): in a query of its own if it is larger
    /// than [`SHARED_ROWS_MAX`].
    pub(crate) fn push_rows(&mut self, statement: &str, rows: usize) {
        let alone = crate::sql::batch_size(rows) > SHARED_ROWS_MAX;
        if alone {
            self.closed = true;
        }
        self.push(statement);
        self.closed = alone;
    }

    /// Binds the next `?` of the statements pushed.
    pub(crate) fn bind<'t, T>(&mut self, value: T)
    where
        T: Encode<'t, Sqlite> + Type<Sqlite>,
    {
        let Some(query) = self.queries.last_mut() else {
            return self.bind_failed("a value bound before any statement".into());
        };
        if let Err(error) = query.args.add(value) {
            self.bind_failed(error);
        }
    }

    fn bind_failed(&mut self, error: BoxDynError) {
        if self.bind_error.is_none() {
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

    /// How many queries running the script takes.
    #[cfg(test)]
    fn queries(&self) -> usize {
        self.queries.len()
    }

    /// Runs the queued statements, as few queries as pushed, and empties
    /// the script; the rows they returned, in order. Stops at the first
    /// statement that fails.
    pub(crate) async fn run(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<SqliteRow>, ScriptFailure> {
        let Script {
            queries,
            bind_error,
            ..
        } = std::mem::take(self);
        if let Some(error) = bind_error {
            return Err(ScriptFailure {
                statement: None,
                error: sqlx::Error::Encode(error),
            });
        }
        let mut done = 0;
        let mut rows = Vec::new();
        for Query { sql, args, .. } in queries {
            let query = sqlx::query_with(AssertSqlSafe(sql), args);
            let mut results = conn.fetch_many(query);
            loop {
                match results.try_next().await {
                    Ok(Some(Either::Left(_))) => done += 1,
                    Ok(Some(Either::Right(row))) => rows.push(row),
                    Ok(None) => break,
                    Err(error) => {
                        return Err(ScriptFailure {
                            statement: Some(done),
                            error,
                        });
                    }
                }
            }
        }
        Ok(rows)
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
    async fn a_large_batched_statement_goes_in_a_query_of_its_own() {
        let mut conn = conn().await;
        let mut script = Script::default();
        script.push("SELECT 1 WHERE 0");
        script.push_rows("INSERT INTO t (a, b) VALUES (?, 'small')", 1);
        script.bind(1i64);
        assert_eq!(script.queries(), 1, "small statements share a query");
        let large = SHARED_ROWS_MAX + 1;
        let values = vec!["(?, 'large')"; large].join(", ");
        script.push_rows(&format!("INSERT INTO t (a, b) VALUES {values}"), large);
        for a in 0..large {
            script.bind(i64::try_from(a).unwrap() + 10);
        }
        script.push("INSERT INTO t (a, b) VALUES (?, 'after')");
        script.bind(2i64);
        script.push("INSERT INTO t (a, b) VALUES (?, 'duplicate')");
        script.bind(2i64);
        assert_eq!(
            script.queries(),
            3,
            "the large one alone: {}",
            script.queries()
        );
        let failure = script.run(&mut conn).await.expect_err("duplicate key");
        assert_eq!(failure.statement, Some(4), "counted across queries");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(count, i64::try_from(large).unwrap() + 2);
    }

    #[test]
    fn a_query_takes_a_bounded_number_of_statements() {
        let mut script = Script::default();
        for _ in 0..STATEMENTS_PER_QUERY_MAX * 2 + 1 {
            script.push("SELECT 1");
        }
        assert_eq!(script.queries(), 3);
        assert_eq!(script.len(), STATEMENTS_PER_QUERY_MAX * 2 + 1);
    }

    #[tokio::test]
    async fn an_empty_script_runs_nothing() {
        let mut conn = conn().await;
        let rows = Script::default().run(&mut conn).await.expect("nothing");
        assert!(rows.is_empty());
    }
}
