//! Human approval with a timeout: three expense reports wait for an
//! `approval` signal (`Stent::wait_for_signal_timeout`); one is approved,
//! one rejected, and one expires after 3 seconds without an answer. The
//! signals are sent from the same program with `executor.send_signal`. See
//! `stent_examples::approval`.
//!
//! ```sh
//! cargo run -p stent-examples --example approval
//! ```

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let executor = fresh_sqlite(db_path("approval")).await?;
    stent_examples::approval::run(&executor, "", "3s").await?;
    Ok(())
}
