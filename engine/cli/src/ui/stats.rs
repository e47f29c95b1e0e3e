//! The console's stats page: executions finished per minute over the last
//! hour, work per queue, and the leases each worker holds — drawn as SVG
//! on the server, so the page needs no script and no chart library.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use stent::journal::Timestamp;
use stent::journal::store::{ExecutionFilter, TaskFilter, TaskState};

use super::Shared;
use super::pages::database_error;
use super::view::{Base, page};

/// The throughput chart covers this many minutes.
const MINUTES: i64 = 60;
/// Executions read for the throughput chart, at most: enough for a dense
/// hour on one screen, bounded so a busy database stays cheap to draw.
const THROUGHPUT_SAMPLE: usize = 10_000;
/// Leased tasks read for the per-worker counts, at most.
const LEASE_SAMPLE: usize = 10_000;

/// `GET /stats`.
pub(crate) async fn stats(State(console): State<Shared>, base: Base) -> Response {
    let now = console.stent.clock_now();
    let stats = match console.stent.stats().await {
        Ok(s) => s,
        Err(e) => return database_error(&base, &e),
    };
    let window_start = Timestamp(now.0 - MINUTES * 60_000);
    // Executions that can have ended in the window were dispatched before
    // its end; the newest THROUGHPUT_SAMPLE of the last day are read.
    let recent = match console
        .stent
        .backend()
        .list_executions(
            ExecutionFilter::default()
                .created_after(Timestamp(now.0 - 24 * 3_600_000))
                .limit(THROUGHPUT_SAMPLE),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return database_error(&base, &stent::Error::from(e)),
    };
    let mut per_minute = vec![(0u64, 0u64); MINUTES as usize];
    for r in &recent {
        if let Some(done) = r
            .completed_at
            .filter(|t| t.0 >= window_start.0 && t.0 <= now.0)
        {
            let i = (((done.0 - window_start.0) / 60_000) as usize).min(MINUTES as usize - 1);
            if r.status == stent::ExecutionStatus::Completed {
                per_minute[i].0 += 1;
            } else {
                per_minute[i].1 += 1;
            }
        }
    }
    let leased = match console
        .stent
        .list_tasks(
            TaskFilter::default()
                .state(TaskState::Leased)
                .limit(LEASE_SAMPLE),
        )
        .await
    {
        Ok(t) => t,
        Err(e) => return database_error(&base, &e),
    };
    let workers = match console.stent.backend().workers().await {
        Ok(w) => w,
        Err(e) => return database_error(&base, &stent::Error::from(e)),
    };
    let mut leases: BTreeMap<String, u64> = workers
        .iter()
        .filter(|w| w.expires_at.0 >= now.0)
        .map(|w| (w.id.as_str().to_string(), 0))
        .collect();
    for t in &leased {
        if let Some(owner) = &t.lease_owner {
            *leases.entry(owner.as_str().to_string()).or_default() += 1;
        }
    }
    let finished: u64 = per_minute.iter().map(|(ok, bad)| ok + bad).sum();
    let content = html! {
        h1 { "Stats" }
        section {
            h2 { "Finished per minute, last hour" }
            p.muted { (finished) " finished: green completed, red failed, cancelled or timed out." }
            (throughput_chart(&per_minute))
        }
        section {
            h2 { "Queues" }
            @if stats.queues.is_empty() {
                p.empty { "No work waiting or running." }
            } @else {
                (queue_chart(&stats.queues))
                table {
                    thead { tr { th { "queue" } th { "due" } th { "later" } th { "running" } th { "waiting" } } }
                    tbody {
                        @for q in &stats.queues {
                            tr { td { (q.queue) } td { (q.due) } td { (q.ready.saturating_sub(q.due)) } td { (q.leased) } td { (q.waiting) } }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Leases per worker" }
            @if leases.is_empty() {
                p.empty { "No live worker, and no lease held." }
            } @else {
                table {
                    thead { tr { th { "worker" } th { "leases held" } } }
                    tbody { @for (w, n) in &leases { tr { td { code { (w) } } td { (n) } } } }
                }
            }
        }
        section {
            h2 { "Counts" }
            table {
                thead { tr { th { "executions" } @for (s, _) in &stats.executions { th { (s.as_str()) } } } }
                tbody { tr { td {} @for (_, n) in &stats.executions { td { (n) } } } }
            }
            p { "Dead letters: " (stats.dead_letters) }
        }
        @if stats.versions.iter().any(|(v, _)| v.is_some()) {
            section {
                h2 { "Code versions" }
                p.muted { "Unfinished executions per code version: when a version has none left, its last workers can go." }
                table {
                    thead { tr { th { "version" } th { "unfinished" } } }
                    tbody { @for (v, n) in &stats.versions {
                        tr { td { @match v { Some(v) => code { (v) }, None => span.muted { "not pinned yet" } } } td { (n) } }
                    } }
                }
            }
        }
    };
    page(&base, "stats", None, content).into_response()
}

/// Stacked bars, one per minute (oldest left), scaled to the busiest.
fn throughput_chart(per_minute: &[(u64, u64)]) -> Markup {
    let max = per_minute
        .iter()
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let width = 600.0;
    let height = 120.0;
    let bar = width / per_minute.len().max(1) as f64;
    html! {
        svg.chart viewBox=(format!("0 0 {width} {}", height + 16.0)) role="img"
            aria-label="executions finished per minute over the last hour" {
            @for (i, (ok, bad)) in per_minute.iter().enumerate() {
                @let x = i as f64 * bar;
                @let ok_h = *ok as f64 / max * height;
                @let bad_h = *bad as f64 / max * height;
                rect.ok x=(format!("{x:.1}")) y=(format!("{:.1}", height - ok_h)) width=(format!("{:.1}", (bar - 1.0).max(1.0))) height=(format!("{ok_h:.1}")) {
                    title { (ok) " completed" }
                }
                rect.bad x=(format!("{x:.1}")) y=(format!("{:.1}", height - ok_h - bad_h)) width=(format!("{:.1}", (bar - 1.0).max(1.0))) height=(format!("{bad_h:.1}")) {
                    title { (bad) " failed, cancelled or timed out" }
                }
            }
            line.axis x1="0" y1=(height) x2=(width) y2=(height) {}
            text x="0" y=(height + 13.0) { "-60 min" }
            text x=(width) y=(height + 13.0) text-anchor="end" { "now" }
            text x=(width) y="10" text-anchor="end" { (max as u64) " / min" }
        }
    }
}

/// A part of a queue's bar: what it counts, how many, where, how wide.
type Segment = (&'static str, u64, f64, f64);

/// One horizontal stacked bar per queue: due, later, running, waiting.
fn queue_chart(queues: &[stent::journal::store::QueueStats]) -> Markup {
    let max = queues
        .iter()
        .map(|q| q.ready + q.leased + q.waiting)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let row = 22.0;
    let label = 160.0;
    let width = 600.0;
    // Each queue's segments, laid end to end after its label.
    let bars: Vec<(&str, Vec<Segment>)> = queues
        .iter()
        .map(|q| {
            let mut x = label;
            let parts = [
                ("due", q.due),
                ("later", q.ready.saturating_sub(q.due)),
                ("running", q.leased),
                ("waiting", q.waiting),
            ]
            .into_iter()
            .map(|(name, n)| {
                let w = n as f64 / max * (width - label - 10.0);
                let part = (name, n, x, w);
                x += w;
                part
            })
            .collect();
            (q.queue.as_str(), parts)
        })
        .collect();
    html! {
        svg.chart viewBox=(format!("0 0 {width} {}", row * queues.len() as f64)) role="img"
            aria-label="tasks per queue: due, later, running, waiting" {
            @for (i, (queue, parts)) in bars.iter().enumerate() {
                @let y = i as f64 * row;
                text x="0" y=(format!("{:.1}", y + 15.0)) { (queue) }
                @for (name, n, x, w) in parts {
                    rect class=(name) x=(format!("{x:.1}")) y=(format!("{:.1}", y + 3.0)) width=(format!("{w:.1}")) height="16" {
                        title { (n) " " (name) }
                    }
                }
            }
        }
    }
}
