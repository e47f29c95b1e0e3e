//! The workflow of the multi-process test, shared by the test (which
//! dispatches it and checks the outcome) and the `stent-pg-worker` binary
//! (which runs it), so both register it under the same name. Every run of a
//! step body inserts a row into a side table, `step_runs`, in the same
//! PostgreSQL schema, so the test can count how often each body ran and in
//! which worker process.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;

static POOL: OnceLock<PgPool> = OnceLock::new();

/// Creates the side table (idempotent).
pub const CREATE_STEP_RUNS: &str = "CREATE TABLE IF NOT EXISTS step_runs ( \
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
    workflow BIGINT NOT NULL, step INTEGER NOT NULL, pid BIGINT NOT NULL, \
    started_ms BIGINT NOT NULL)";

/// The pool step bodies write their run markers through (set once per
/// process, before serving).
pub fn set_pool(pool: PgPool) {
    let _ = POOL.set(pool);
}

/// One step of workflow `workflow`: records that its body ran here (and
/// when it began, on this host's clock, which the engine's `recorded_at`
/// also reads), works for a moment (so a kill can land inside a step),
/// returns a value the test can check. The record is written again until
/// it lands, as an external effect with an idempotency key would be: the
/// database may be restarting.
#[stent::durable]
pub async fn fleet_step(workflow: u64, step: u32) -> Result<u64, String> {
    let pool = POOL.get().ok_or("step_runs pool not set in this process")?;
    let began = now_ms();
    let mut tries = 0;
    loop {
        let recorded = sqlx::query(
            "INSERT INTO step_runs (workflow, step, pid, started_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(workflow as i64)
        .bind(step as i32)
        .bind(i64::from(std::process::id()))
        .bind(began)
        .execute(pool)
        .await;
        match recorded {
            Ok(_) => break,
            Err(e) if tries >= 600 => {
                return Err(format!(
                    "recording the run of step {step} of workflow {workflow}: {e}"
                ));
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(workflow * 100 + u64::from(step))
}

/// Milliseconds since the Unix epoch on this host's clock.
#[allow(clippy::disallowed_methods)] // test bookkeeping outside any workflow
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `steps` steps, one after another.
#[stent::durable]
pub async fn fleet_flow(workflow: u64, steps: u32) -> Result<u64, String> {
    let mut acc = 0;
    for step in 0..steps {
        acc += fleet_step(workflow, step).await?;
    }
    Ok(acc)
}

/// What `fleet_flow(workflow, steps)` returns.
pub fn expected(workflow: u64, steps: u32) -> u64 {
    (0..steps).map(|s| workflow * 100 + u64::from(s)).sum()
}
