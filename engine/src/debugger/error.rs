//! The error of the replay debugger.

use std::path::PathBuf;

use stent_journal::export::ExportError;

/// What can go wrong when exporting, loading or replaying a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebugError {
    /// Reading or writing an export file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The export is not one this build can read, or is damaged.
    #[error("{}: {source}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "journal export".into()))]
    Export {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        source: ExportError,
    },
    /// The engine or the storage failed (an unknown execution, an
    /// unregistered function, a database error).
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

impl From<ExportError> for DebugError {
    fn from(source: ExportError) -> Self {
        DebugError::Export { path: None, source }
    }
}

impl From<stent_journal::store::StoreError> for DebugError {
    fn from(e: stent_journal::store::StoreError) -> Self {
        DebugError::Engine(e.into())
    }
}
