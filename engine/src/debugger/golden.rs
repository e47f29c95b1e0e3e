//! Keeping old executions safe when code changes: replay every exported
//! journal of a folder against today's code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stent_journal::export::JournalExport;

use crate::debugger::DebugError;
use crate::debugger::export::ExportExt;
use crate::debugger::replay::{ReplayMode, ReplayReport, Replayer};
use crate::registry::FunctionRegistry;

/// The extension of exported journals that [`check_journals`] reads.
pub const EXPORT_EXTENSION: &str = "stent";

/// Replays every `*.stent` export in `dir` (sorted by name) against
/// `registry`, listing every divergence of each. An unreadable export is an
/// error naming the file.
pub async fn check_journals(
    registry: impl Into<Arc<FunctionRegistry>>,
    dir: impl AsRef<Path>,
) -> Result<Vec<(PathBuf, ReplayReport)>, DebugError> {
    check_journals_with(&Replayer::new(registry).mode(ReplayMode::All), dir).await
}

/// Like [`check_journals`], with a replayer of your own (a serializer, a
/// mode, leaves re-run).
pub async fn check_journals_with(
    replayer: &Replayer,
    dir: impl AsRef<Path>,
) -> Result<Vec<(PathBuf, ReplayReport)>, DebugError> {
    let dir = dir.as_ref();
    let io = |source| DebugError::Io {
        action: "list",
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == EXPORT_EXTENSION) {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let export = JournalExport::read_from(&path)?;
        let report = replayer.replay(&export).await?;
        out.push((path, report));
    }
    Ok(out)
}

/// Asserts that every exported journal (`*.stent`) in `dir` still replays
/// cleanly against `registry` — the test that keeps old executions safe
/// when workflow code changes. Panics with every file, seq and field-level
/// difference that does not; also when `dir` holds no export at all.
///
/// Export journals worth keeping with [`ExportExt::write_to`] (or
/// `stent journal ID --export FILE`) into a folder of your tests, then:
///
/// ```no_run
/// #[tokio::test]
/// async fn old_executions_still_replay() {
///     stent::debugger::assert_journals_replay(
///         stent::FunctionRegistry::global(),
///         concat!(env!("CARGO_MANIFEST_DIR"), "/tests/journals"),
///     )
///     .await;
/// }
/// ```
pub async fn assert_journals_replay(
    registry: impl Into<Arc<FunctionRegistry>>,
    dir: impl AsRef<Path>,
) {
    assert_journals_replay_with(&Replayer::new(registry).mode(ReplayMode::All), dir).await
}

/// Like [`assert_journals_replay`], with a replayer of your own (for
/// journals recorded with the JSON serializer, say).
///
/// ```no_run
/// use stent::debugger::{ReplayMode, Replayer, assert_journals_replay_with};
///
/// # async fn demo() {
/// let replayer = Replayer::new(stent::FunctionRegistry::global())
///     .mode(ReplayMode::All)
///     .serializer(stent::journal::Serializer::Json);
/// assert_journals_replay_with(&replayer, "tests/journals").await;
/// # }
/// ```
pub async fn assert_journals_replay_with(replayer: &Replayer, dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let reports = match check_journals_with(replayer, dir).await {
        Ok(r) => r,
        Err(e) => panic!("could not replay the journals in {}: {e}", dir.display()),
    };
    if reports.is_empty() {
        panic!(
            "no exported journals (*.{EXPORT_EXTENSION}) in {}: export some with \
             JournalExport::write_to or `stent journal ID --export FILE`",
            dir.display()
        );
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|(_, r)| !r.is_clean())
        .map(|(path, r)| format!("{}: {r}", path.display()))
        .collect();
    if !failed.is_empty() {
        panic!(
            "{} of {} exported journals in {} no longer replay against this code:\n{}",
            failed.len(),
            reports.len(),
            dir.display(),
            failed.join("\n")
        );
    }
}
