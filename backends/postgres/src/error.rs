//! sqlx's errors as [`DatabaseError`]s: PostgreSQL's SQLSTATE kept, the
//! driver's error as the source, and a kind from the SQLSTATE's class
//! (connection exceptions, shutdowns, sessions ended by the server's idle
//! timeouts and a read-only server: unavailable; serialization failures,
//! deadlocks, lock timeouts and statements cancelled by a timeout or an
//! operator: contention; disk full: full).

use std::fmt::Display;

use stent_journal::store::{DatabaseError, DatabaseErrorKind, StoreError};

/// `e` as a [`StoreError::Database`], its text prefixed with `context`.
pub(crate) fn database_error(context: impl Display, e: sqlx::Error) -> StoreError {
    StoreError::Database(typed(e).context(context))
}

/// `e` as a [`DatabaseError`] with its kind, code and source.
pub(crate) fn typed(e: sqlx::Error) -> DatabaseError {
    let error = DatabaseError::new(e.to_string()).with_kind(kind_of_error(&e));
    let error = match e.as_database_error().and_then(|d| d.code()) {
        Some(code) => error.with_code(code.into_owned()),
        None => error,
    };
    error.with_source(e)
}

/// The kind of `e`.
pub(crate) fn kind_of_error(e: &sqlx::Error) -> DatabaseErrorKind {
    match e {
        sqlx::Error::Database(d) => d.code().map_or(DatabaseErrorKind::Other, |c| kind_of(&c)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DatabaseErrorKind::Unavailable,
        _ => DatabaseErrorKind::Other,
    }
}

/// The kind of a SQLSTATE.
fn kind_of(sqlstate: &str) -> DatabaseErrorKind {
    match sqlstate {
        // serialization_failure, deadlock_detected, lock_not_available;
        // query_canceled (statement_timeout, or pg_cancel_backend by an
        // operator): the statement was rolled back and may run again
        "40001" | "40P01" | "55P03" | "57014" => DatabaseErrorKind::Contention,
        // disk_full
        "53100" => DatabaseErrorKind::Full,
        // admin, crash and startup shutdowns; too many connections; a
        // read-only server (a standby after a failover); a session the
        // server ended for sitting idle (idle_session_timeout,
        // idle_in_transaction_session_timeout): the next connection works
        "57P01" | "57P02" | "57P03" | "53300" | "25006" | "57P05" | "25P03" => {
            DatabaseErrorKind::Unavailable
        }
        // connection exceptions
        s if s.starts_with("08") => DatabaseErrorKind::Unavailable,
        _ => DatabaseErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        for (state, kind) in [
            ("40001", DatabaseErrorKind::Contention),
            ("40P01", DatabaseErrorKind::Contention),
            ("53100", DatabaseErrorKind::Full),
            ("57P01", DatabaseErrorKind::Unavailable),
            ("08006", DatabaseErrorKind::Unavailable),
            ("25006", DatabaseErrorKind::Unavailable),
            ("57P05", DatabaseErrorKind::Unavailable),
            ("25P03", DatabaseErrorKind::Unavailable),
            ("57014", DatabaseErrorKind::Contention),
            ("23505", DatabaseErrorKind::Other),
            ("42P01", DatabaseErrorKind::Other),
        ] {
            assert_eq!(kind_of(state), kind, "{state}");
        }
    }

    #[test]
    fn a_lost_pool_is_unavailable() {
        let StoreError::Database(e) = database_error("claim", sqlx::Error::PoolTimedOut) else {
            panic!("a database error");
        };
        assert_eq!(e.kind(), DatabaseErrorKind::Unavailable);
        assert!(e.message().starts_with("claim: "), "{e}");
        assert_eq!(e.code(), None);
    }
}
