//! A media pipeline: download (retried with backoff) → three transcodes in
//! parallel (cached) → thumbnail (panics, is dead-lettered, fixed and
//! replayed) → publish; then the same input again, answered from the
//! transcode cache. See `stent_examples::media_pipeline`.
//!
//! ```sh
//! cargo run -p stent-examples --example media_pipeline
//! ```
//!
//! The worker catches the thumbnailer's panics; this program installs a
//! one-line panic hook so they do not flood the terminal with backtraces.

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(non-string panic)");
        eprintln!("  (panic, caught by the worker: {message})");
    }));
    let executor = fresh_sqlite(db_path("media_pipeline")).await?;
    stent_examples::media_pipeline::run(&executor, "cooking", "pasta.mov").await?;
    Ok(())
}
