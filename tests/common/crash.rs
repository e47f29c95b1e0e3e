//! The workflow of the crash-recovery test, shared by the test (which
//! dispatches it) and the worker binary (which runs it), so both register
//! it under the same name. Every step appends to a log file outside the
//! engine, so the test can count how often each body ran.

use std::io::Write;
use std::time::Duration;

use stent::Stent;

/// Appends a line to `dir/steps.log` and syncs it, so a SIGKILL right after
/// cannot lose it.
pub fn log_line(dir: &str, line: &str) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(dir).join("steps.log"))
        .map_err(|e| e.to_string())?;
    writeln!(f, "{line}").map_err(|e| e.to_string())?;
    f.sync_data().map_err(|e| e.to_string())
}

/// Reads the step log.
pub fn read_log(dir: &str) -> Vec<String> {
    std::fs::read_to_string(std::path::Path::new(dir).join("steps.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// One step: logs `begin i`, works for `work_ms` (simulated external work),
/// logs `done i`.
#[stent::durable]
pub async fn record_step(dir: String, i: u32, work_ms: u64) -> Result<u32, String> {
    log_line(&dir, &format!("begin {i}"))?;
    if work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
    }
    log_line(&dir, &format!("done {i}"))?;
    Ok(i * 10)
}

/// Two steps, a durable sleep, a signal wait, a last step.
#[stent::durable]
pub async fn crash_flow(dir: String) -> Result<u32, String> {
    let a = record_step(dir.clone(), 1, 0).await?;
    let b = record_step(dir.clone(), 2, 1500).await?;
    Stent::sleep("3s").await.map_err(|e| e.to_string())?;
    let go: u32 = Stent::wait_for_signal("go")
        .await
        .map_err(|e| e.to_string())?;
    let c = record_step(dir, 3, 0).await?;
    Ok(a + b + c + go)
}
