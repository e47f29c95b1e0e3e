//! Changing code under executions in flight: orders start on v1 of a
//! workflow, the deploy check vets v2 (a patch keeps the old orders on the
//! old branch), and v2 finishes old and new orders, each on its own branch.
//! See `stent_examples::changing_code` and docs/guides/changing-code.md.
//!
//! ```sh
//! cargo run -p stent-examples --example changing_code
//! ```

use stent::backends::SqliteBackend;
use stent_examples::support::{db_path, remove_db_files};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let path = db_path("changing_code");
    remove_db_files(&path)?;
    let backend = SqliteBackend::open(&path).await?;
    backend.init_db().await?;
    let outcome = stent_examples::changing_code::run(&backend, 1).await?;
    println!(
        "{} order(s) started on v1 went by truck, {} started on v2 flew; without the patch {} would have paused",
        outcome.started_on_v1.len(),
        outcome.started_on_v2.len(),
        outcome.unpatched_would_pause
    );
    Ok(())
}
