//! Crash and recover: this binary re-executes itself as a child worker
//! process (`crash_and_recover worker DB`), kills it with SIGKILL in the
//! middle of a 5-step workflow, starts another one, and shows from the
//! journal and from a step log that completed steps were not run again.
//! See `stent_examples::crash_and_recover`.
//!
//! ```sh
//! cargo run -p stent-examples --example crash_and_recover
//! ```
//!
//! Files: `stent-crash_and_recover.db` and
//! `stent-crash_and_recover.steps.log` in the current directory.

use std::path::PathBuf;

use stent_examples::crash_and_recover;

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("worker") {
        let db = PathBuf::from(args.next().ok_or("usage: crash_and_recover worker DB")?);
        return crash_and_recover::serve_worker(&db).await;
    }
    let exe = std::env::current_exe()?;
    let (db, log) = crash_and_recover::default_paths();
    crash_and_recover::run(&db, &log, || {
        let mut command = tokio::process::Command::new(&exe);
        command.arg("worker");
        command
    })
    .await?;
    Ok(())
}
