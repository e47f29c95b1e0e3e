//! A research agent: a long-running loop that searches, reads and takes
//! notes in rounds, sleeping durably between rounds (`Stent::sleep`), and
//! reports its progress through execution-scoped counters and custom state.
//! The dispatching program watches it with `state_of` while it runs.
//!
//! A real agent would sleep for hours between rounds (waiting for new
//! sources, respecting a rate limit); the durable sleep costs nothing while
//! it lasts — no worker slot, no process — and survives restarts. The
//! example sleeps `interval` between rounds (1 s when run from the command
//! line; an hour in the tests, which run on paused time).
//!
//! ```sh
//! cargo run -p stent-examples --example research_agent
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{ExecutionId, ExecutionState, ExecutionStatus, Stent};

use crate::support::LocalWorker;

/// What the agent found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// The topic.
    pub topic: String,
    /// One note per source read, in the order read.
    pub notes: Vec<String>,
    /// The final summary.
    pub summary: String,
}

/// Searches for sources about `topic` (simulated): two or three new ones
/// per round.
#[stent::durable]
pub async fn search(topic: String, round: u32) -> Result<Vec<String>, String> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let found = 2 + round % 2;
    let sources = (1..=found)
        .map(|i| format!("{}-paper-{round}.{i}", topic.replace(' ', "-")))
        .collect::<Vec<_>>();
    println!("  round {round}: search found {}", sources.join(", "));
    Ok(sources)
}

/// Reads one source and writes a note about it (simulated).
#[stent::durable]
pub async fn read_source(source: String) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let note = format!("{source}: {} key claims", 1 + source.len() % 4);
    Stent::context()
        .and_then(|ctx| ctx.counters("sources_read").add(1))
        .map_err(|e| e.to_string())?;
    Ok(note)
}

/// Writes the final report from the notes (simulated).
#[stent::durable]
pub async fn write_report(topic: String, notes: Vec<String>) -> Result<String, String> {
    println!("  writing the report from {} notes", notes.len());
    Ok(format!(
        "{topic}: {} sources reviewed over {} claims",
        notes.len(),
        notes.iter().map(|n| n.len() % 4 + 1).sum::<usize>()
    ))
}

/// The workflow: `rounds` rounds of search → read every source in parallel
/// → durable sleep of `interval`; then the report. Counters `rounds` and
/// `sources_read`; custom state `phase` and `latest`.
#[stent::durable]
pub async fn research(topic: String, rounds: u32, interval: Duration) -> Result<Findings, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    let phase = |p: String| ctx.state("phase").set(&p).map_err(|e| e.to_string());
    let mut notes = Vec::new();
    for round in 1..=rounds {
        phase(format!("searching (round {round}/{rounds})"))?;
        let sources = search(topic.clone(), round).await?;
        phase(format!("reading {} sources", sources.len()))?;
        let new_notes = Stent::map(read_source, sources).await?;
        if let Some(last) = new_notes.last() {
            ctx.state("latest").set(last).map_err(|e| e.to_string())?;
        }
        notes.extend(new_notes);
        ctx.counters("rounds").add(1).map_err(|e| e.to_string())?;
        if round < rounds {
            phase(format!("sleeping {interval:?} before round {}", round + 1))?;
            Stent::sleep(interval).await.map_err(|e| e.to_string())?;
        }
    }
    phase("writing the report".into())?;
    let summary = write_report(topic.clone(), notes.clone()).await?;
    phase("done".into())?;
    Ok(Findings {
        topic,
        notes,
        summary,
    })
}

/// One line describing an execution's state: status, phase, counters,
/// progress.
pub fn describe(state: &ExecutionState) -> String {
    let phase: Option<String> = state.custom_state_as("phase").ok().flatten();
    let counter = |name: &str| state.counters.get(name).copied().unwrap_or(0.0);
    format!(
        "{:<9} phase={:<32} rounds={} sources_read={:<2} ({})",
        state.state.as_str(),
        phase.map_or_else(|| "(not set yet)".to_string(), |p| format!("{p:?}")),
        counter("rounds"),
        counter("sources_read"),
        state.progress_str
    )
}

/// What [`run`] observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResearchReport {
    /// The result.
    pub findings: Findings,
    /// Every distinct state line printed while watching, in order.
    pub observed: Vec<String>,
    /// The final counters `(rounds, sources_read)`.
    pub counters: (f64, f64),
}

async fn watch(
    executor: &Stent,
    id: ExecutionId,
    every: Duration,
    limit: Duration,
) -> crate::Result<Vec<String>> {
    let started = tokio::time::Instant::now();
    let mut observed: Vec<String> = Vec::new();
    loop {
        let state = executor.state_of(id).await?;
        let line = describe(&state);
        if observed.last() != Some(&line) {
            println!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
            observed.push(line);
        }
        if state.state.is_terminal() || state.state == ExecutionStatus::Paused {
            return Ok(observed);
        }
        if started.elapsed() > limit {
            return Err(format!("still {} after {limit:?}", state.state).into());
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs the example: researches `topic` in `rounds` rounds with durable
/// sleeps of `interval` in between, printing its state (from `state_of`)
/// every `every` whenever it changed.
pub async fn run(
    executor: &Stent,
    topic: &str,
    rounds: u32,
    interval: Duration,
    every: Duration,
) -> crate::Result<ResearchReport> {
    let limit = interval * rounds + Duration::from_secs(60);
    let worker = LocalWorker::start(executor, |w| w).await;
    let id = executor
        .dispatch(research(topic.into(), rounds, interval))
        .await?;
    println!("researching {topic:?}: {rounds} rounds, {interval:?} apart (execution {id})");
    let observed = watch(executor, id, every, limit).await?;
    let findings = executor
        .wait_for::<Findings, String>(id, Some(Duration::from_secs(60)))
        .await??;
    let state = executor.state_of(id).await?;
    println!("summary: {}", findings.summary);
    let latest: Option<String> = state.custom_state_as("latest")?;
    println!("latest note: {}", latest.unwrap_or_default());
    worker.stop().await?;
    Ok(ResearchReport {
        findings,
        observed,
        counters: (
            state.counters.get("rounds").copied().unwrap_or(0.0),
            state.counters.get("sources_read").copied().unwrap_or(0.0),
        ),
    })
}
