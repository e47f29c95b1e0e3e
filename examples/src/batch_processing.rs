//! Batch processing: `Stent::map` over thousands of items, with a
//! cluster-wide concurrency limit on the external call
//! (`#[durable(max_concurrent = N)]`), execution-scoped counters for
//! progress, and a live progress line printed by the dispatching program
//! from `state_of`.
//!
//! All the item calls are scheduled in one turn (one transaction) when
//! `Stent::map` is called; the backend then hands out at most
//! [`MAX_CONCURRENT`] of them at a time, across every worker. Each item
//! bumps the counter `processed` (journaled in the item's own journal, so a
//! retried or replayed item never counts twice).
//!
//! ```sh
//! cargo run -p stent-examples --example batch_processing          # 10,000 items
//! cargo run -p stent-examples --example batch_processing -- 2000  # fewer
//! ```

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{ExecutionStatus, Stent};

use crate::support::LocalWorker;

/// At most this many `enrich_record` calls run at once, cluster-wide.
pub const MAX_CONCURRENT: u32 = 16;

/// One processed item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Enriched {
    /// The item id.
    pub id: u64,
    /// A score the "external API" computed for it.
    pub score: u64,
}

/// The batch's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Items processed.
    pub items: u64,
    /// Sum of the scores.
    pub total_score: u64,
    /// The best item.
    pub best: Option<Enriched>,
}

// Calls of `enrich_record` in flight and the most seen at once, per batch
// (measured outside the engine, to show the limit holds).
static IN_FLIGHT: Mutex<BTreeMap<String, (u32, u32)>> = Mutex::new(BTreeMap::new());

fn in_flight(batch: &str, delta: i32) {
    let mut map = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let (now, peak) = map.entry(batch.to_string()).or_insert((0, 0));
    *now = now.saturating_add_signed(delta);
    *peak = (*peak).max(*now);
}

/// The most `enrich_record` calls of batch `batch` that ran at once in this
/// process.
///
/// ```
/// assert_eq!(stent_examples::batch_processing::peak_concurrency("none"), 0);
/// ```
pub fn peak_concurrency(batch: &str) -> u32 {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(batch)
        .map_or(0, |(_, peak)| *peak)
}

/// The external call: enriches item `id` of batch `batch` (simulated with a
/// 1 ms wait, like a fast API). Limited to [`MAX_CONCURRENT`] concurrent
/// calls by the backend, across every worker. (The attribute takes a
/// literal, so the constant repeats its value.)
#[stent::durable(max_concurrent = 16)]
pub async fn enrich_record(batch: String, id: u64) -> Result<Enriched, String> {
    in_flight(&batch, 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    in_flight(&batch, -1);
    let score = id.wrapping_mul(2_654_435_761) % 1000;
    Stent::context()
        .and_then(|ctx| ctx.counters("processed").add(1))
        .map_err(|e| e.to_string())?;
    Ok(Enriched { id, score })
}

/// The workflow: enriches items `0..count` of batch `batch` in parallel
/// (input order is kept), then summarizes.
#[stent::durable]
pub async fn process_batch(batch: String, count: u64) -> Result<BatchSummary, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    ctx.state("phase")
        .set("enriching")
        .map_err(|e| e.to_string())?;
    let enriched = Stent::map(|id| enrich_record(batch.clone(), id), 0..count).await?;
    ctx.state("phase")
        .set("summarizing")
        .map_err(|e| e.to_string())?;
    let best = enriched
        .iter()
        .copied()
        .max_by_key(|e| (e.score, u64::MAX - e.id));
    Ok(BatchSummary {
        items: enriched.len() as u64,
        total_score: enriched.iter().map(|e| e.score).sum(),
        best,
    })
}

/// What [`run`] observed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// The workflow's result.
    pub summary: BatchSummary,
    /// The `processed` counter at the end.
    pub processed: f64,
    /// How many progress lines were printed while it ran.
    pub progress_lines: usize,
    /// `state_of(..).progress_str` at the end.
    pub progress_str: String,
    /// The most `enrich_record` calls seen running at once.
    pub peak_concurrency: u32,
}

/// Runs the example: dispatches batch `batch` of `count` items, prints a
/// progress line every `every` until it finishes, and prints the summary.
pub async fn run(
    executor: &Stent,
    batch: &str,
    count: u64,
    every: Duration,
) -> crate::Result<BatchReport> {
    let worker = LocalWorker::start(executor, |w| w.max_concurrency(64)).await;
    let started = tokio::time::Instant::now();
    let id = executor
        .dispatch(process_batch(batch.into(), count))
        .await?;
    println!(
        "dispatched a batch of {count} items (at most {MAX_CONCURRENT} external calls at once)"
    );

    let tty = std::io::stdout().is_terminal();
    let mut progress_lines = 0;
    let state = loop {
        let state = executor.state_of(id).await?;
        let processed = state.counters.get("processed").copied().unwrap_or(0.0);
        let phase: String = state
            .custom_state_as("phase")?
            .unwrap_or_else(|| "starting".into());
        let line = format!(
            "  [{:>5.1}s] {:<11} processed {:>6}/{count}  ({})",
            started.elapsed().as_secs_f64(),
            phase,
            processed,
            state.progress_str
        );
        progress_lines += 1;
        if tty {
            print!("\r{line}");
            std::io::stdout().flush()?;
        } else {
            println!("{line}");
        }
        if state.state.is_terminal() || state.state == ExecutionStatus::Paused {
            if tty {
                println!();
            }
            break state;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("batch still {} after 10 minutes", state.state).into());
        }
        tokio::time::sleep(every).await;
    };

    let summary = executor
        .result_of::<BatchSummary, String>(id)
        .await?
        .map_err(|e| format!("batch failed: {e}"))?;
    println!(
        "done in {:.1}s: {} items, total score {}, best {:?}; at most {} calls ran at once",
        started.elapsed().as_secs_f64(),
        summary.items,
        summary.total_score,
        summary.best,
        peak_concurrency(batch)
    );
    worker.stop().await?;
    Ok(BatchReport {
        summary,
        processed: state.counters.get("processed").copied().unwrap_or(0.0),
        progress_lines,
        progress_str: state.progress_str,
        peak_concurrency: peak_concurrency(batch),
    })
}
