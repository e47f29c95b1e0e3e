//! A worker process for the multi-process test: serves
//! `stent_tests::fleet` workflows from a PostgreSQL schema until killed,
//! woken by `LISTEN`/`NOTIFY`.
//!
//! ```sh
//! stent-pg-worker POSTGRES_URL SCHEMA [WORKER_ID]
//! ```
//!
//! `STENT_WORKER_LEASE_MS` and `STENT_WORKER_HEARTBEAT_MS` set the lease
//! (default 5,000) and the heartbeat (default 1,000).

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
    // The lease and heartbeat, in milliseconds, from the environment.
    let ms = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(default), Duration::from_millis)
    };
    executor
        .worker()
        .worker_id(worker_id)
        .max_concurrency(32)
        .lease_duration(ms("STENT_WORKER_LEASE_MS", 5000))
        .heartbeat_interval(ms("STENT_WORKER_HEARTBEAT_MS", 1000))
        .poll_min_interval(Duration::from_millis(50))
        .poll_max_interval(Duration::from_millis(500))
        .serve()
        .await?;
    Ok(())
}
