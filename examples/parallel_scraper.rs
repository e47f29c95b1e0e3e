//! A parallel scraper: `Stent::gather` over seven pages, some of which
//! fail; transient failures are retried, and the crawl reports every
//! success and every failure. See `stent_examples::parallel_scraper`.
//!
//! ```sh
//! cargo run -p stent-examples --example parallel_scraper
//! ```

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let executor = fresh_sqlite(db_path("parallel_scraper")).await?;
    stent_examples::parallel_scraper::run(&executor, "docs.example").await?;
    Ok(())
}
