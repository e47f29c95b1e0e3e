//! A worker process of one code version (`STENT_TEST_CODE_VERSION`) for the
//! version-pinning test: serves `stent_tests::versions` from the SQLite file
//! named by its first argument until killed.

use std::time::Duration;

use stent_tests::versions::{VERSION_VAR, running_version};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Link the workflow definitions into this binary's registry.
    let _ = stent_tests::versions::versioned_flow;
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: stent-version-worker DB_PATH")?;
    if std::env::var_os(VERSION_VAR).is_none() {
        return Err(format!("set {VERSION_VAR} to this worker's code version").into());
    }
    let backend = stent::backends::SqliteBackend::open(&path).await?;
    let executor = stent::Stent::builder(backend)
        .code_version(running_version())
        .build();
    executor
        .worker()
        .worker_id(format!("version-worker-{}", running_version()))
        .poll_min_interval(Duration::from_millis(20))
        .poll_max_interval(Duration::from_millis(100))
        .serve()
        .await?;
    Ok(())
}
