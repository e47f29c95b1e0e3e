//! The child worker process of the `crash_and_recover` test: serves the
//! SQLite database named by its first argument until killed (the example
//! binary does the same when re-executed as `crash_and_recover worker DB`).

use std::path::PathBuf;

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let db = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: stent-examples-crash-worker DB")?,
    );
    stent_examples::crash_and_recover::serve_worker(&db).await
}
