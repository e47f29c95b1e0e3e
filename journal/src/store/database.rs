//! [`DatabaseError`]: a failure of the database itself (not of stent's
//! rules), with what a caller needs to act on it: a kind that says whether
//! trying again can help, the database's own error code (a PostgreSQL
//! SQLSTATE, an SQLite result code) and the driver's error as the source.
//!
//! Backends fill it in; this crate knows no driver, so the source is any
//! error.

use std::fmt;
use std::sync::Arc;

/// What kind of database failure happened, for callers that decide by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// The database could not be reached or went away: connection refused
    /// or lost, no pooled connection in time, the server shutting down or
    /// starting up. Whether a write that failed this way landed is unknown.
    Unavailable,
    /// The write lost a race it may win if run again: a deadlock, a
    /// serialization failure, a locked or busy database.
    Contention,
    /// The disk or a quota is full; writes fail until there is room.
    Full,
    /// Anything else (a statement the database refused, a driver fault).
    Other,
}

impl DatabaseErrorKind {
    /// True if the same call may succeed later without anyone changing
    /// anything: the database comes back, the race is lost by another, room
    /// is freed.
    pub fn is_transient(self) -> bool {
        !matches!(self, DatabaseErrorKind::Other)
    }

    /// A short name: `unavailable`, `contention`, `full`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseErrorKind::Unavailable => "unavailable",
            DatabaseErrorKind::Contention => "contention",
            DatabaseErrorKind::Full => "full",
            DatabaseErrorKind::Other => "other",
        }
    }
}

/// A failure of the database, as [`StoreError::Database`] carries it.
///
/// Its text says what stent was doing and what the database said; the
/// database's code and the driver's error stay available.
///
/// ```
/// use stent_journal::store::{DatabaseError, DatabaseErrorKind, StoreError};
///
/// let e = StoreError::Database(
///     DatabaseError::new("commit: deadlock detected")
///         .with_kind(DatabaseErrorKind::Contention)
///         .with_code("40P01"),
/// );
/// if let StoreError::Database(db) = &e {
///     assert_eq!(db.code(), Some("40P01"));
///     assert!(db.kind().is_transient());
/// }
/// assert_eq!(e.to_string(), "database error: commit: deadlock detected (code 40P01)");
/// ```
///
/// [`StoreError::Database`]: super::StoreError::Database
#[derive(Debug, Clone)]
pub struct DatabaseError {
    message: String,
    kind: DatabaseErrorKind,
    code: Option<String>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl DatabaseError {
    /// A failure described by `message`, of kind
    /// [`DatabaseErrorKind::Other`] until told otherwise.
    pub fn new(message: impl Into<String>) -> DatabaseError {
        DatabaseError {
            message: message.into(),
            kind: DatabaseErrorKind::Other,
            code: None,
            source: None,
        }
    }

    /// With `kind`.
    pub fn with_kind(mut self, kind: DatabaseErrorKind) -> DatabaseError {
        self.kind = kind;
        self
    }

    /// With the database's error code (a SQLSTATE, an SQLite result code).
    pub fn with_code(mut self, code: impl Into<String>) -> DatabaseError {
        self.code = Some(code.into());
        self
    }

    /// With the driver's error as the source.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DatabaseError {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same failure, its text prefixed with `context` (what was being
    /// done when it happened).
    pub fn context(mut self, context: impl fmt::Display) -> DatabaseError {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// What happened, without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind of failure.
    pub fn kind(&self) -> DatabaseErrorKind {
        self.kind
    }

    /// The database's own error code, if it gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.code {
            Some(code) => write!(f, " (code {code})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for DatabaseError {
    fn from(message: String) -> DatabaseError {
        DatabaseError::new(message)
    }
}

impl From<&str> for DatabaseError {
    fn from(message: &str) -> DatabaseError {
        DatabaseError::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_source_and_code_are_kept_and_context_prefixes_the_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = DatabaseError::new("connection reset by peer")
            .with_kind(DatabaseErrorKind::Unavailable)
            .with_source(io)
            .context("commit");
        assert_eq!(e.to_string(), "commit: connection reset by peer");
        assert_eq!(e.kind(), DatabaseErrorKind::Unavailable);
        assert_eq!(e.code(), None);
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "reset by peer");
        // Clones share the source.
        assert!(e.clone().source().is_some());
    }

    #[test]
    fn only_other_failures_are_not_transient() {
        for kind in [
            DatabaseErrorKind::Unavailable,
            DatabaseErrorKind::Contention,
            DatabaseErrorKind::Full,
        ] {
            assert!(kind.is_transient(), "{}", kind.as_str());
        }
        assert!(!DatabaseErrorKind::Other.is_transient());
    }
}
