//! A worker process for the multi-process test: serves
//! `stent_tests::fleet` workflows from a PostgreSQL schema until killed,
//! woken by `LISTEN`/`NOTIFY`.
//!
//! ```sh
//! stent-pg-worker POSTGRES_URL SCHEMA [WORKER_ID]
//! ```

use std::time::Duration;

use stent::backends::PostgresBackend;
use stent::notifications::PostgresNotifier;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: stent-pg-worker POSTGRES_URL SCHEMA [WORKER_ID]";
    let url = args.next().ok_or(usage)?;
    let schema = args.next().ok_or(usage)?;
    let worker_id = args
        .next()
        .unwrap_or_else(|| format!("pg-worker-{}", std::process::id()));
    let backend = PostgresBackend::builder(&url)
        .schema(&schema)
        .max_connections(8)
        .build()
        .await?;
    backend.init_db().await?;
    stent_tests::fleet::set_pool(backend.pool().clone());
    let executor = stent::Stent::builder(backend.clone())
        .notification_backend(PostgresNotifier::new(&backend))
        .build();
    executor
        .worker()
        .worker_id(worker_id)
        .max_concurrency(32)
        .lease_duration(Duration::from_secs(5))
        .heartbeat_interval(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .poll_interval_max(Duration::from_millis(500))
        .serve()
        .await?;
    Ok(())
}
