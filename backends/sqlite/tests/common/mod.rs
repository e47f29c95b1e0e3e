//! Helpers shared by the SQLite backend's test files.

use std::path::PathBuf;

use stent_journal::ExecutionId;

/// A temporary database path; the file and its WAL files are removed on drop.
pub struct TempPath(pub PathBuf);

impl TempPath {
    /// A fresh path in the temp directory, named after `label`.
    pub fn new(label: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!(
            "stent-sqlite-{label}-{}.db",
            ExecutionId::new_random()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
