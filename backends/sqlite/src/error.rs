//! sqlx's errors as [`DatabaseError`]s: SQLite's result code kept, the
//! driver's error as the source, and a kind from SQLite's primary result
//! code (busy or locked: contention; full: full; I/O, cannot open, or a
//! database that became read-only: unavailable).

use std::fmt::Display;

use stent_journal::store::{DatabaseError, DatabaseErrorKind, StoreError};

/// SQLite's primary result codes this backend tells apart.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

/// `e` as a [`StoreError::Database`], its text prefixed with `context`.
pub(crate) fn database_error(context: impl Display, e: sqlx::Error) -> StoreError {
    StoreError::Database(typed(e).context(context))
}

/// `e` as a [`DatabaseError`] with its kind, code and source.
pub(crate) fn typed(e: sqlx::Error) -> DatabaseError {
    let (kind, code) = match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned());
            let primary = code
                .as_deref()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            let kind = match primary {
                Some(SQLITE_BUSY | SQLITE_LOCKED) => DatabaseErrorKind::Contention,
                Some(SQLITE_FULL) => DatabaseErrorKind::Full,
                // Read-only: a file or file system an operator made
                // read-only, as a PostgreSQL standby is; writes work again
                // once it is writable.
                Some(SQLITE_IOERR | SQLITE_CANTOPEN | SQLITE_READONLY) => {
                    DatabaseErrorKind::Unavailable
                }
                _ => DatabaseErrorKind::Other,
            };
            (kind, code)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => (DatabaseErrorKind::Unavailable, None),
        _ => (DatabaseErrorKind::Other, None),
    };
    let error = DatabaseError::new(e.to_string()).with_kind(kind);
    let error = match code {
        Some(code) => error.with_code(code),
        None => error,
    };
    error.with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_io_error_is_unavailable_and_kept_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let StoreError::Database(e) = database_error("opening x.db", sqlx::Error::Io(io)) else {
            panic!("a database error");
        };
        assert_eq!(e.kind(), DatabaseErrorKind::Unavailable);
        assert!(e.message().starts_with("opening x.db: "), "{e}");
        assert!(e.source().is_some());
    }

    #[tokio::test]
    async fn sqlite_result_codes_are_kept_and_classified() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("open");
        let err = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut conn)
            .await
            .expect_err("no such table");
        let e = typed(err);
        assert_eq!(e.code(), Some("1"), "{e}");
        assert_eq!(e.kind(), DatabaseErrorKind::Other);
        assert!(e.to_string().contains("no such table"), "{e}");
    }

    #[tokio::test]
    async fn a_write_to_a_read_only_database_is_unavailable() {
        use sqlx::Connection;
        let path = std::env::temp_dir().join(format!(
            "stent-readonly-{}-{:?}.db",
            std::process::id(),
            std::thread::current().id()
        ));
        let url = format!("sqlite://{}", path.display());
        let mut rw = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("create");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut rw)
            .await
            .expect("create table");
        rw.close().await.expect("close");
        let mut ro = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
            .await
            .expect("open read-only");
        let err = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut ro)
            .await
            .expect_err("read-only");
        let e = typed(err);
        assert_eq!(
            e.code().map(|c| c.parse::<i64>().unwrap() & 0xff),
            Some(8),
            "{e}"
        );
        assert_eq!(e.kind(), DatabaseErrorKind::Unavailable, "{e}");
        let _ = ro.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
