//! How long the deploy check takes on a database of unfinished executions:
//! `--executions` workflows (default 10,000), each run until it waits for a
//! signal after `--steps` durable calls (default 5; a root journal of
//! `2 * steps + 2` events plus one leaf journal per call), then checked
//! `--rounds` times against the same code (library `DeployCheck`, as
//! `stent deploy-check` runs it) at each concurrency of `--concurrency`
//! (comma-separated, default `1,8`). Prints wall time and executions per
//! second per round.
//!
//! ```text
//! cargo run --release -p stent-cli --example deploy_check_bench -- [--executions 10000] [--steps 5] [--rounds 3] [--concurrency 1,8] [--pg URL]
//! ```
//!
//! With `--pg URL` it runs on PostgreSQL in a schema of its own, dropped at
//! the end.

use std::time::Duration;

use stent::Stent;
use stent::debugger::DeployCheck;
use tokio::time::Instant;

#[path = "support/bench.rs"]
mod bench;
use bench::{arg, text_arg};

#[stent::durable]
async fn step(order: u64, i: u32) -> Result<u64, String> {
    Ok(order + u64::from(i))
}

#[stent::durable]
async fn order_flow(order: u64, steps: u32) -> Result<u64, String> {
    let mut total = 0;
    for i in 0..steps {
        total += step(order, i).await?;
    }
    let _: String = Stent::wait_for_signal("packed")
        .await
        .map_err(|e| e.to_string())?;
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let executions = arg("--executions", 10_000);
    let steps = u32::try_from(arg("--steps", 5))?;
    let rounds = arg("--rounds", 3);
    let concurrency: Vec<usize> = text_arg("--concurrency")
        .unwrap_or_else(|| "1,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let pg = text_arg("--pg");
    let dir = std::env::temp_dir().join(format!("stent-deploy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let schema = format!("stent_deploy_bench_{}", std::process::id());
    let executor = bench::open(pg.as_deref(), &schema, &dir.join("bench.db")).await?;

    // Fill: every execution runs its steps and waits for its signal.
    let start = Instant::now();
    let worker = tokio::spawn(executor.worker().max_concurrency(256).serve());
    let mut dispatchers = tokio::task::JoinSet::new();
    for part in 0..8 {
        let executor = executor.clone();
        dispatchers.spawn(async move {
            for n in (part..executions).step_by(8) {
                executor.dispatch(order_flow(n, steps)).await?;
            }
            Ok::<(), stent::Error>(())
        });
    }
    while let Some(done) = dispatchers.join_next().await {
        done??;
    }
    loop {
        let stats = executor.stats().await?;
        let waiting: u64 = stats
            .tasks
            .iter()
            .filter(|(s, _)| s.as_str() == "waiting")
            .map(|(_, n)| n)
            .sum();
        if waiting >= executions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.abort();
    eprintln!(
        "filled: {executions} executions waiting after {steps} steps each, in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    println!("| concurrency | round | executions | seconds | executions/s |");
    println!("|---|---|---|---|---|");
    for &c in &concurrency {
        for round in 1..=rounds {
            let report = DeployCheck::new().concurrency(c).run(&executor).await?;
            assert!(report.is_safe(), "{report}");
            assert_eq!(report.checked as u64, executions);
            let secs = report.elapsed.as_secs_f64();
            println!(
                "| {c} | {round} | {} | {secs:.2} | {:.0} |",
                report.checked,
                report.checked as f64 / secs
            );
        }
    }

    if let Some(url) = &pg {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
