//! The logic of stent's runnable examples, one module per example.
//!
//! Each `examples/NAME.rs` is a thin `main` that opens a fresh SQLite file
//! (`stent-NAME.db` in the current directory) and calls `NAME::run`; the
//! integration tests under `examples/tests/` call the same `run` functions
//! on the in-memory backend (with paused time, so durable sleeps cost
//! nothing) and on SQLite.
//!
//! ```sh
//! cargo run -p stent-examples --example saga_trip_booking
//! cargo run -p stent-examples --example batch_processing
//! cargo run -p stent-examples --example media_pipeline
//! cargo run -p stent-examples --example parallel_scraper
//! cargo run -p stent-examples --example approval
//! cargo run -p stent-examples --example research_agent
//! cargo run -p stent-examples --example crash_and_recover
//! cargo run -p stent-examples --example replay_debugging
//! cargo run -p stent-examples --example changing_code
//! ```
//!
//! Every example prints what it does from its durable steps and from the
//! code that dispatches and watches the executions. A step body runs at least
//! once per scheduled call, so after a crash a step that was interrupted can
//! print twice; a step that completed never runs (or prints) again.

pub mod approval;
pub mod batch_processing;
pub mod changing_code;
pub mod crash_and_recover;
pub mod media_pipeline;
pub mod parallel_scraper;
pub mod replay_debugging;
pub mod research_agent;
pub mod saga_trip_booking;
pub mod support;

pub use support::{BoxError, LocalWorker, Result};
