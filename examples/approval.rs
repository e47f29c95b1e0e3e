//! Human approval with a timeout: three expense reports wait for an
//! `approval` signal (`Stent::wait_for_signal_timeout`); one is approved,
//! one rejected, and one expires after 3 seconds without an answer. The
//! signals are sent from the same program with `executor.send_signal`. See
//! `stent_examples::approval`.
//!
//! With `--wait`, one report waits (up to 10 minutes) for *you* to answer
//! from a second process with the `stent` command line; the commands to run
//! are printed.
//!
//! ```sh
//! cargo run -p stent-examples --example approval
//! cargo run -p stent-examples --example approval -- --wait
//! ```

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let path = db_path("approval");
    let executor = fresh_sqlite(&path).await?;
    if std::env::args().any(|a| a == "--wait") {
        let db = path.display().to_string();
        stent_examples::approval::run_waiting_for_cli(&executor, &db, "10m").await?;
    } else {
        stent_examples::approval::run(&executor, "", "3s").await?;
    }
    Ok(())
}
