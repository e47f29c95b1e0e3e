//! Loading an execution into a [`JournalExport`], and export files.

use std::future::Future;
use std::path::Path;

use stent_journal::ExecutionId;
use stent_journal::export::JournalExport;
use stent_journal::store::{Backend, ExecutionRecord, StoreError};

use crate::debugger::DebugError;
use crate::error::Error;
use crate::executor::Stent;

/// Loading and saving a [`JournalExport`]: from a database, to and from a file.
///
/// ```no_run
/// use stent::debugger::{ExportExt, JournalExport};
///
/// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::debugger::DebugError> {
/// let export = JournalExport::from_stent(&executor, id).await?;
/// export.write_to("order-7.stent")?;
/// let again = JournalExport::read_from("order-7.stent")?;
/// assert_eq!(again, export);
/// # Ok(()) }
/// ```
pub trait ExportExt: Sized {
    /// The execution `id` and the journal of every invocation of it, read
    /// from `backend`. [`crate::Error::NotFound`] if there is no such execution.
    fn from_store(
        backend: &dyn Backend,
        id: ExecutionId,
    ) -> impl Future<Output = Result<Self, DebugError>> + Send;

    /// Like [`ExportExt::from_store`], from the executor's backend.
    fn from_stent(
        stent: &Stent,
        id: ExecutionId,
    ) -> impl Future<Output = Result<Self, DebugError>> + Send;

    /// Writes the export to `path` (replacing the file).
    fn write_to(&self, path: impl AsRef<Path>) -> Result<(), DebugError>;

    /// Reads an export written by [`ExportExt::write_to`] (or by
    /// `stent journal ID --export FILE`).
    fn read_from(path: impl AsRef<Path>) -> Result<Self, DebugError>;
}

/// The export of the execution `record` describes: its journals, read
/// from `backend`, with the record already in hand.
pub(crate) async fn export_of(
    backend: &dyn Backend,
    record: ExecutionRecord,
) -> Result<JournalExport, DebugError> {
    let invocations = backend.read_execution_journal(record.id, None).await?;
    JournalExport::new(record, invocations)
        .map_err(|e| DebugError::Engine(Error::Backend(StoreError::Corrupt(e.to_string()))))
}

impl ExportExt for JournalExport {
    async fn from_store(backend: &dyn Backend, id: ExecutionId) -> Result<Self, DebugError> {
        let record = backend
            .execution(id)
            .await?
            .ok_or(DebugError::Engine(Error::NotFound(id)))?;
        export_of(backend, record).await
    }

    async fn from_stent(stent: &Stent, id: ExecutionId) -> Result<Self, DebugError> {
        Self::from_store(stent.backend().as_ref(), id).await
    }

    fn write_to(&self, path: impl AsRef<Path>) -> Result<(), DebugError> {
        let path = path.as_ref();
        let bytes = self.to_bytes().map_err(|source| DebugError::Export {
            path: Some(path.to_path_buf()),
            source,
        })?;
        std::fs::write(path, bytes).map_err(|source| DebugError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    fn read_from(path: impl AsRef<Path>) -> Result<Self, DebugError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| DebugError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        JournalExport::from_bytes(&bytes).map_err(|source| DebugError::Export {
            path: Some(path.to_path_buf()),
            source,
        })
    }
}
