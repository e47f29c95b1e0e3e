//! A research agent: a long-running loop of search → read → durable sleep,
//! with context counters and custom state, watched with `state_of` while it
//! runs. See `stent_examples::research_agent`.
//!
//! ```sh
//! cargo run -p stent-examples --example research_agent
//! ```

use std::time::Duration;

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let executor = fresh_sqlite(db_path("research_agent")).await?;
    stent_examples::research_agent::run(
        &executor,
        "durable execution",
        4,
        Duration::from_secs(1),
        Duration::from_millis(100),
    )
    .await?;
    Ok(())
}
