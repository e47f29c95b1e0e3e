//! `stent watch`: a live view that redraws every `--interval`.

use std::time::Duration;

use clap::Args;
use serde_json::{Value as Json, json};
use stent::{ExecutionState, ExecutionStatus, ProgressState};

use super::stats::{Snapshot, snapshot, snapshot_json, snapshot_text};
use crate::render::{Table, bar, cut, cut_tail, elapsed_text};
use crate::{CliError, Context};

/// Arguments of `stent watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Time between frames (`500ms`, `2s`, `1m`, `1m30s`).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many frames (default: until interrupted).
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Most active executions shown.
    #[arg(long, default_value_t = 15)]
    pub limit: usize,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = match text.strip_suffix("ms").map(str::parse::<u64>) {
        Some(Ok(ms)) => Duration::from_millis(ms),
        _ => stent::journal::parse_duration(text).map_err(|e| e.to_string())?,
    };
    if d.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(d)
}

/// Columns of the active table besides FUNCTION and NOW: a short id,
/// the state, and the gaps between columns.
const ACTIVE_FIXED: usize = 8 + 2 + 9 + 2 + 2;

/// The terminal's width: `$COLUMNS` when set, else 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(80)
}

/// Calls done and total of an execution's progress.
fn done_total(e: &ExecutionState) -> (usize, usize) {
    let done = e
        .progress
        .iter()
        .filter(|p| p.state != ProgressState::Scheduled)
        .count();
    (done, e.progress.len())
}

fn finished(s: &Snapshot) -> u64 {
    s.stats
        .executions
        .iter()
        .filter(|(status, _)| status.is_terminal())
        .map(|(_, n)| n)
        .sum()
}

/// Runs `stent watch`.
pub async fn run(ctx: &mut Context<'_>, args: WatchArgs) -> Result<(), CliError> {
    let mut previous: Option<(u64, tokio::time::Instant)> = None;
    let mut frame: u64 = 0;
    loop {
        let snap = snapshot(ctx, 10).await?;
        // Active: running, paused (waiting for a person), pending.
        let mut active = Vec::new();
        for state in [
            ExecutionStatus::Running,
            ExecutionStatus::Paused,
            ExecutionStatus::Pending,
        ] {
            if active.len() >= args.limit {
                break;
            }
            let more = ctx
                .stent
                .list_executions(args.limit - active.len(), 0, Some(state))
                .await?;
            active.extend(more);
        }
        let now = tokio::time::Instant::now();
        let done = finished(&snap);
        // Executions finished per second since the previous frame.
        let throughput = previous.map(|(before, at)| {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                done.saturating_sub(before) as f64 / secs
            } else {
                0.0
            }
        });
        previous = Some((done, now));
        frame += 1;

        if ctx.json {
            let mut value = snapshot_json(&snap);
            value["frame"] = json!(frame);
            value["throughput_per_sec"] = json!(throughput);
            value["active"] = Json::Array(
                active
                    .iter()
                    .map(|e| {
                        let (done, total) = done_total(e);
                        json!({"id": e.id.to_string(), "function": e.function,
                               "state": e.state.as_str(), "done": done, "total": total,
                               "waits": e.waits.iter().map(super::show::wait_json)
                                   .collect::<Vec<Json>>()})
                    })
                    .collect(),
            );
            let line = serde_json::to_string(&value)
                .map_err(|e| CliError::Invalid(format!("encoding JSON output: {e}")))?;
            ctx.line(&line)?;
        } else {
            let style = ctx.style();
            let mut text = String::new();
            if ctx.terminal {
                // Clear the screen and go home: redraw in place.
                text.push_str("\x1b[2J\x1b[H");
            }
            let rate = match throughput {
                Some(r) => format!("{r:.2} executions/s finished"),
                None => "measuring…".to_string(),
            };
            text.push_str(&format!(
                "{}  frame {frame}, every {}  throughput: {rate}\n\n",
                style.bold("stent watch"),
                elapsed_text(args.interval.as_millis() as i64)
            ));
            if active.is_empty() {
                text.push_str("no active executions\n");
            } else {
                // Fits the terminal: ids shortened, function names keep
                // their end, the last column takes what is left.
                let width = terminal_width();
                let function_width = (width.saturating_sub(ACTIVE_FIXED) / 2).clamp(12, 48);
                let now_width = width.saturating_sub(ACTIVE_FIXED + function_width).max(20);
                let mut table = Table::new(&["EXECUTION", "STATE", "FUNCTION", "NOW"]);
                for e in &active {
                    let (done, total) = done_total(e);
                    let now = match (e.state, e.waits.first()) {
                        (ExecutionStatus::Paused, _) => {
                            let summary = e.pause.as_ref().map(|p| p.summary());
                            cut(summary.as_deref().unwrap_or("paused"), now_width)
                        }
                        (_, Some(w)) => cut(&format!("waiting: {w}"), now_width),
                        (_, None) => format!("{} {done}/{total}", bar(done, total, 10)),
                    };
                    table.row(vec![
                        e.id.to_string()[..8].to_string(),
                        style.state(e.state.as_str()),
                        cut_tail(&e.function, function_width),
                        now,
                    ]);
                }
                text.push_str(&table.render(style));
            }
            text.push('\n');
            text.push_str(&snapshot_text(&snap, style));
            if !ctx.terminal {
                text.push_str("---\n");
            }
            ctx.print(&text)?;
        }
        ctx.out.flush()?;
        if args.iterations.is_some_and(|n| frame >= n) {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}
