//! A workflow that tells which code version ran it, for the tests of
//! version pinning: worker processes of two versions side by side, each
//! finishing only the executions of its own.

use stent::Stent;

/// The environment variable that names a worker process's code version.
pub const VERSION_VAR: &str = "STENT_TEST_CODE_VERSION";

/// This process's code version (`STENT_TEST_CODE_VERSION`), or `"none"`.
pub fn running_version() -> String {
    std::env::var(VERSION_VAR).unwrap_or_else(|_| "none".into())
}

/// Its result, journaled: the code version of the process that ran it.
#[stent::durable]
pub async fn which_version() -> Result<String, String> {
    Ok(running_version())
}

/// Records which version started it, waits for the signal `go`, then
/// returns `"<started>-><finished>"`: the versions of the processes that
/// ran its first step and its end.
#[stent::durable]
pub async fn versioned_flow(n: u32) -> Result<String, String> {
    let _ = n;
    let started = which_version().await?;
    let _: String = Stent::wait_for_signal("go")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{started}->{}", running_version()))
}
