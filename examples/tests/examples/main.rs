//! Runs every example to completion: on the in-memory backend with paused
//! time (durable sleeps and retry delays cost no real time), and on SQLite
//! files in a temp directory with real time. Each example's `run` takes
//! distinct inputs per test, since the examples' fake services keep
//! process-wide state.

mod approval;
mod batch_processing;
mod changing_code;
mod crash_and_recover;
mod media_pipeline;
mod parallel_scraper;
mod replay_debugging;
mod research_agent;
mod saga_trip_booking;
mod targets;

use std::path::PathBuf;

use stent::Stent;
use stent::backends::MemoryBackend;

/// An executor over a fresh in-memory backend.
pub fn memory() -> Stent {
    Stent::new(MemoryBackend::new())
}

/// An executor over a fresh SQLite file in a new temp directory (returned,
/// to be removed by [`cleanup`]).
pub async fn sqlite(name: &str) -> (Stent, PathBuf) {
    let dir = stent_examples::support::temp_dir(name).expect("temp dir");
    let executor = stent_examples::support::fresh_sqlite(dir.join("stent.db"))
        .await
        .expect("open sqlite");
    (executor, dir)
}

/// Removes a temp directory made by [`sqlite`].
pub fn cleanup(dir: PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
}
