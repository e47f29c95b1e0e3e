//! `stent stats`: counts per state, queue depths, dead letters, running work.

use clap::Args;
use serde_json::{Value as Json, json};
use stent::records::{StoreStats, TaskFilter, TaskRecord, TaskState};

use super::tasks::task_json;
use crate::render::{Table, cut, elapsed_text, escape_controls, time_text};
use crate::{CliError, Context};

/// Arguments of `stent stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Most running tasks to list.
    #[arg(long, default_value_t = 20)]
    pub running: usize,
}

/// Counts and running work, read together.
pub(crate) struct Snapshot {
    pub stats: StoreStats,
    pub running: Vec<TaskRecord>,
    /// Ready work no live worker serves, per function and queue.
    pub unserved: Vec<Unserved>,
    pub now: stent::journal::Timestamp,
}

/// Ready tasks of one function in one queue that no live worker would claim.
pub(crate) struct Unserved {
    pub function: String,
    pub queue: String,
    pub tasks: u64,
    /// The earliest time one of them was runnable.
    pub since: stent::journal::Timestamp,
}

/// Ready tasks read to find unserved work: enough for any backlog an
/// operator reads in a terminal, bounded so a huge queue stays cheap.
const UNSERVED_SCAN: usize = 10_000;

/// Ready work that no live worker serves (its function is registered with
/// no worker that claims its queue and tags), oldest first.
async fn unserved(
    ctx: &Context<'_>,
    now: stent::journal::Timestamp,
) -> Result<Vec<Unserved>, CliError> {
    let ready = ctx
        .stent
        .list_tasks(
            TaskFilter::default()
                .state(TaskState::Ready)
                .limit(UNSERVED_SCAN),
        )
        .await?;
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    let workers = ctx
        .stent
        .backend()
        .workers()
        .await
        .map_err(stent::Error::from)?;
    let mut groups: std::collections::BTreeMap<(String, String), Unserved> = Default::default();
    for t in ready.iter().filter(|t| {
        !workers
            .iter()
            .any(|w| w.serves(&t.function, &t.routing, now))
    }) {
        let g = groups
            .entry((t.function.clone(), t.routing.queue.clone()))
            .or_insert_with(|| Unserved {
                function: t.function.clone(),
                queue: t.routing.queue.clone(),
                tasks: 0,
                since: t.run_at,
            });
        g.tasks += 1;
        g.since = g.since.min(t.run_at);
    }
    let mut out: Vec<Unserved> = groups.into_values().collect();
    out.sort_by_key(|u| u.since);
    Ok(out)
}

pub(crate) async fn snapshot(ctx: &Context<'_>, running: usize) -> Result<Snapshot, CliError> {
    let stats = ctx.stent.stats().await?;
    let running = ctx
        .stent
        .list_tasks(
            TaskFilter::default()
                .state(TaskState::Leased)
                .limit(running),
        )
        .await?;
    let now = ctx.stent.clock_now();
    let unserved = unserved(ctx, now).await?;
    Ok(Snapshot {
        stats,
        running,
        unserved,
        now,
    })
}

pub(crate) fn snapshot_json(s: &Snapshot) -> Json {
    let executions: serde_json::Map<String, Json> = s
        .stats
        .executions
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    let tasks: serde_json::Map<String, Json> = s
        .stats
        .tasks
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    let queues: Vec<Json> = s
        .stats
        .queues
        .iter()
        .map(|q| {
            json!({"queue": q.queue, "ready": q.ready, "due": q.due, "leased": q.leased,
                   "waiting": q.waiting})
        })
        .collect();
    json!({
        "executions": executions,
        "tasks": tasks,
        "queues": queues,
        "dead_letters": s.stats.dead_letters,
        "versions": s.stats.versions.iter().map(|(v, n)| json!({
            "code_version": v,
            "unfinished": n,
        })).collect::<Vec<_>>(),
        "running": s.running.iter().map(task_json).collect::<Vec<_>>(),
        "unserved": s.unserved.iter().map(|u| json!({
            "function": u.function,
            "queue": u.queue,
            "tasks": u.tasks,
            "since": u.since.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn snapshot_text(s: &Snapshot, style: crate::render::Style) -> String {
    let mut text = String::new();
    // Counts in lines that fit 80 columns after the 13-column label.
    let counts = |pairs: Vec<(&str, u64)>| {
        let mut lines: Vec<String> = vec![String::new()];
        for (k, n) in pairs {
            let item = format!("{k} {n}");
            let line = lines.last_mut().expect("one line at least");
            if line.is_empty() {
                *line = item;
            } else if line.len() + 2 + item.len() <= 80 - 13 {
                line.push_str("  ");
                line.push_str(&item);
            } else {
                lines.push(item);
            }
        }
        lines.join(&format!("\n{}", " ".repeat(13)))
    };
    text.push_str(&format!(
        "{} {}\n",
        style.bold("executions  "),
        counts(
            s.stats
                .executions
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect()
        )
    ));
    text.push_str(&format!(
        "{} {}\n",
        style.bold("tasks       "),
        counts(
            s.stats
                .tasks
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect()
        )
    ));
    let dead = s.stats.dead_letters.to_string();
    let dead = if s.stats.dead_letters > 0 {
        style.bad(&dead)
    } else {
        dead
    };
    text.push_str(&format!("{} {dead}\n", style.bold("dead letters")));
    // Unfinished executions per code version: when a version shows none,
    // its last workers can go.
    if s.stats.versions.iter().any(|(v, _)| v.is_some()) {
        let versions: Vec<String> = s
            .stats
            .versions
            .iter()
            .map(|(v, n)| {
                let name = v.as_deref().map(escape_controls);
                (name.unwrap_or_else(|| "(not pinned)".into()), n)
            })
            .map(|(name, n)| format!("{name}: {n} unfinished"))
            .collect();
        text.push_str(&format!(
            "{} {}\n",
            style.bold("versions    "),
            versions.join("   ")
        ));
    }
    for u in &s.unserved {
        text.push_str(&format!(
            "{} {}\n",
            style.bold("unserved    "),
            style.bad(&cut(
                &format!(
                    "{} in queue {}: {} ready, no live worker serves it (runnable since {})",
                    u.function,
                    u.queue,
                    u.tasks,
                    time_text(u.since)
                ),
                200
            ))
        ));
    }
    text.push('\n');
    if s.stats.queues.is_empty() {
        text.push_str("queues: no work waiting or running\n");
    } else {
        // DUE: runnable now; LATER: runnable at a time to come (a timer,
        // a delay, a retry's backoff); WAITING: woken by a child's result
        // or a signal.
        let mut table = Table::new(&["QUEUE", "DUE", "LATER", "RUNNING", "WAITING"]);
        for q in &s.stats.queues {
            table.row(vec![
                cut(&q.queue, 32),
                q.due.to_string(),
                q.ready.saturating_sub(q.due).to_string(),
                q.leased.to_string(),
                q.waiting.to_string(),
            ]);
        }
        text.push_str(&table.render(style));
    }
    text.push('\n');
    if s.running.is_empty() {
        text.push_str("running: nothing\n");
    } else {
        let mut table = Table::new(&["RUNNING TASK", "FUNCTION", "WORKER", "LEASE"]);
        for t in &s.running {
            let lease = match t.lease_until {
                Some(until) if until.0 >= s.now.0 => {
                    format!("{} left", elapsed_text(until.0 - s.now.0))
                }
                Some(until) => style.bad(&format!("expired at {}", time_text(until))),
                None => "-".into(),
            };
            table.row(vec![
                t.invocation.to_string(),
                cut(&t.function, 40),
                t.lease_owner
                    .as_ref()
                    .map(|w| w.as_str().to_string())
                    .unwrap_or_default(),
                lease,
            ]);
        }
        text.push_str(&table.render(style));
    }
    text
}

/// Runs `stent stats`.
pub async fn run(ctx: &mut Context<'_>, args: StatsArgs) -> Result<(), CliError> {
    let s = snapshot(ctx, args.running).await?;
    if ctx.json {
        return ctx.print_json(&snapshot_json(&s));
    }
    let text = snapshot_text(&s, ctx.style());
    ctx.print(&text)
}
