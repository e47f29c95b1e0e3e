//! The SQLite backend serves readers while a writer holds the database's
//! write lock (WAL and a reader pool), instead of queueing everything
//! behind one connection.

use std::time::Duration;

use sqlx::{Connection, Executor};
use stent::Stent;
use stent::backends::SqliteBackend;

#[stent::durable]
async fn noted(x: u32) -> Result<u32, String> {
    Ok(x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_proceed_while_another_connection_holds_the_write_lock() {
    let dir = std::env::temp_dir().join(format!("stent-wal-{}", stent::ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stent.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.init_db().await.unwrap();
    let executor = Stent::new(backend);
    let id = executor.dispatch(noted(1)).await.unwrap();

    // Another process-like connection takes the write lock and keeps it.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    other
        .execute("UPDATE executions SET queue = queue WHERE 0")
        .await
        .unwrap();

    // A write from stent now waits for the lock...
    let pending_write = tokio::spawn({
        let executor = executor.clone();
        async move { executor.dispatch(noted(2)).await }
    });
    // ...while reads are answered at once.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let state = executor.state_of(id).await.unwrap();
        let listed = executor.list_executions(10, 0, None).await.unwrap();
        (state, listed)
    })
    .await
    .expect("reads are not blocked by the writer");
    assert_eq!(read.0.id, id);
    assert!(read.1.iter().any(|e| e.id == id));

    other.execute("COMMIT").await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), pending_write)
        .await
        .expect("the write goes through once the lock is free")
        .unwrap()
        .unwrap();
    assert!(executor.state_of(second).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
