//! Replay debugging: records a completed checkout and a failed report in
//! `stent-replay_debugging.db`, then prints the `stent-replay-debugging`
//! commands that replay them against the changed code, step through one,
//! and fork the failed report onto the fix. See
//! `stent_examples::replay_debugging`.
//!
//! ```sh
//! cargo run -p stent-examples --example replay_debugging
//! ```

use stent::Stent;
use stent::backends::SqliteBackend;
use stent_examples::replay_debugging::{Code, record, registry};
use stent_examples::support::{db_path, remove_db_files};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let path = db_path("replay_debugging");
    remove_db_files(&path)?;
    let backend = SqliteBackend::open(&path).await?;
    backend.init_db().await?;
    let executor = Stent::builder(backend)
        .function_registry(registry(Code::Recorded))
        .build();
    let recorded = record(&executor).await?;
    let cli = "cargo run -q -p stent-examples --bin stent-replay-debugging --";
    let db = path.display();
    println!();
    println!("Replay against the code that recorded them (exit 0):");
    println!("  {cli} --db {db} replay {}", recorded.checkout);
    println!("Against the changed code (exit 3, the seq and field that changed):");
    println!(
        "  STENT_EXAMPLE_CODE=changed {cli} --db {db} replay {} --all",
        recorded.checkout
    );
    println!("Step through it (n, c, p, q):");
    println!(
        "  STENT_EXAMPLE_CODE=changed {cli} --db {db} replay {} --step",
        recorded.checkout
    );
    println!("Fork the failed report onto the fix, keeping its load (seqs 0..3):");
    println!(
        "  STENT_EXAMPLE_CODE=changed {cli} --db {db} fork {} --at 3",
        recorded.report
    );
    Ok(())
}
