//! The shared conformance suite, run against [`stent_sqlite::SqliteBackend`]
//! on a fresh database file per test.

use std::path::PathBuf;
use std::sync::Arc;

use stent_journal::ExecutionId;
use stent_journal::store::Backend;
use stent_sqlite::{SqliteBackend, Synchronous};

/// A backend on a temporary file, deleted (with its WAL files) on drop.
struct TempDb {
    backend: SqliteBackend,
    path: PathBuf,
}

impl TempDb {
    async fn new() -> TempDb {
        // A random UUID keeps concurrent test processes apart.
        let path = std::env::temp_dir().join(format!(
            "stent-sqlite-conformance-{}.db",
            ExecutionId::new_random()
        ));
        let backend = SqliteBackend::builder(&path)
            // Durability is not under test; keep the suite fast.
            .synchronous(Synchronous::Off)
            .build()
            .await
            .expect("open temp database");
        backend.init_db().await.expect("init_db");
        TempDb { backend, path }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl stent_conformance::Fixture for TempDb {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.backend.clone())
    }
}

stent_conformance::conformance_tests!(TempDb::new());

mod in_memory {
    stent_conformance::conformance_tests!(async {
        let backend = stent_sqlite::SqliteBackend::in_memory()
            .await
            .expect("in-memory database");
        backend.init_db().await.expect("init_db");
        backend
    });
}
