//! Batch processing: `Stent::map` over 10,000 items with
//! `#[durable(max_concurrent = 16)]` on the external call, context counters
//! for progress, and a live progress line read with `state_of`. See
//! `stent_examples::batch_processing`.
//!
//! ```sh
//! cargo run -p stent-examples --example batch_processing          # 10,000 items
//! cargo run -p stent-examples --example batch_processing -- 2000  # fewer
//! ```

use std::time::Duration;

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let count = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let executor = fresh_sqlite(db_path("batch_processing")).await?;
    stent_examples::batch_processing::run(&executor, "nightly", count, Duration::from_millis(500))
        .await?;
    Ok(())
}
