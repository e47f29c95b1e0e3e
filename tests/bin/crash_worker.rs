//! A worker process for the crash-recovery test: serves `stent_tests::crash`
//! workflows from the SQLite file named by its first argument until killed.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Link the workflow definitions into this binary's registry.
    let _ = stent_tests::crash::crash_flow;
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: stent-crash-worker DB_PATH")?;
    let backend = stent::backends::SqliteBackend::open(&path).await?;
    backend.init_db().await?;
    let executor = stent::Stent::new(backend);
    executor
        .worker()
        .worker_id(format!("crash-worker-{}", std::process::id()))
        .lease_duration(Duration::from_millis(1000))
        .heartbeat_interval(Duration::from_millis(250))
        .poll_min_interval(Duration::from_millis(50))
        .poll_max_interval(Duration::from_millis(200))
        .serve()
        .await?;
    Ok(())
}
