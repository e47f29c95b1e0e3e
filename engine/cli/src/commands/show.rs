//! `stent show ID`: one execution in full.

use clap::Args;
use serde_json::{Value as Json, json};
use stent::{CallTask, ExecutionState, Interruption, Payload, ProgressState, Wait, Waiting};

use crate::render::{
    Table, datetime_text, elapsed_text, escape_controls, failure_json, failure_text, number,
    payload_json, payload_text,
};
use crate::{CliError, Context};

/// Arguments of `stent show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The execution id.
    pub id: String,
}

/// An execution as JSON; `full` adds every durable call's progress.
pub fn execution_json(e: &ExecutionState, full: bool) -> Json {
    let result = match &e.result {
        Some(Ok(value)) => json!({"ok": payload_json(value)}),
        Some(Err(failure)) => json!({"error": failure_json(failure)}),
        None => Json::Null,
    };
    let custom_state: serde_json::Map<String, Json> = e
        .custom_state
        .iter()
        .map(|(k, v)| (k.clone(), payload_json(v)))
        .collect();
    let mut value = json!({
        "id": e.id.to_string(),
        "function": e.function,
        "state": e.state.as_str(),
        "queue": e.queue,
        "priority": e.priority,
        "tags": e.tags,
        "created_at": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "started_at": e.started_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "completed_at": e.completed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "retries": e.retries,
        "code_version": e.code_version,
        "progress": e.progress_str,
        "counters": e.counters,
        "custom_state": custom_state,
        "result": result,
        "pause_report": e.pause_report,
        "pause": e.pause.as_ref().and_then(|p| serde_json::to_value(p).ok()),
        "waits": e.waits.iter().map(wait_json).collect::<Vec<Json>>(),
        "unconsumed_signals": e
            .unconsumed_signals
            .iter()
            .map(|s| json!({
                "id": s.id.0,
                "name": s.name,
                "payload": payload_json(&Payload::from_bytes(s.payload.clone())),
            }))
            .collect::<Vec<Json>>(),
        "corrupt": e.corrupt,
        "interruption": e.interruption.as_ref().map(interruption_json),
        "forked_from": e.forked_from.map(|f| json!({
            "execution": f.execution.to_string(),
            "at": f.at.0,
        })),
    });
    if full {
        let calls: Vec<Json> = e
            .progress
            .iter()
            .map(|p| {
                json!({
                    "function": p.function,
                    "call_key": p.call_key.to_string(),
                    "invocation": p.invocation.to_string(),
                    "seq": p.seq.0,
                    "child": p.child.map(|c| c.to_string()),
                    "state": p.state.as_str(),
                    "cached": p.cached,
                    "started_at": p.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "completed_at": p.completed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                })
            })
            .collect();
        value["calls"] = Json::Array(calls);
    }
    value
}

/// How a cancelled or timed-out execution was interrupted, as JSON:
/// `{"kind": "cancelled", "reason": …}` or `{"kind": "timed_out",
/// "deadline": …}`.
fn interruption_json(i: &Interruption) -> Json {
    match i {
        Interruption::Cancelled { reason } => json!({"kind": "cancelled", "reason": reason}),
        Interruption::TimedOut { deadline } => {
            json!({"kind": "timed_out", "deadline": deadline.map(rfc3339)})
        }
        other => json!({"kind": "other", "text": other.to_string()}),
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One thing an execution waits for, as JSON: `kind` (`timer`, `signal`,
/// `call`, `claim`), the waiting invocation and seq, since when, and what
/// the kind tells (a timer's `due`; a signal's `name` and `timeout`; a
/// call's `function`, `child` and `task` with its `state` and details).
pub fn wait_json(w: &Wait) -> Json {
    let mut v = json!({
        "kind": w.what.kind(),
        "invocation": w.invocation.to_string(),
        "seq": w.seq.0,
        "since": rfc3339(w.since),
        "text": w.to_string(),
    });
    match &w.what {
        Waiting::Timer { due } => v["due"] = json!(rfc3339(*due)),
        Waiting::Signal { name, timeout } => {
            v["name"] = json!(name);
            v["timeout"] = json!(timeout.map(rfc3339));
        }
        Waiting::Call {
            function,
            child,
            task,
        } => {
            v["function"] = json!(function);
            v["child"] = json!(child.to_string());
            let mut t = json!({"state": task.kind()});
            match task {
                CallTask::Ready { since } | CallTask::Unserved { since } => {
                    t["since"] = json!(rfc3339(*since))
                }
                CallTask::Scheduled { at } => t["at"] = json!(rfc3339(*at)),
                CallTask::Retrying {
                    attempt,
                    at,
                    last_error,
                } => {
                    t["attempt"] = json!(attempt);
                    t["at"] = json!(rfc3339(*at));
                    t["last_error"] = json!(last_error);
                }
                CallTask::Running {
                    worker,
                    lease_until,
                } => {
                    t["worker"] = json!(worker);
                    t["lease_until"] = json!(rfc3339(*lease_until));
                }
                CallTask::DeadLettered { reason } => t["reason"] = json!(reason),
                _ => {}
            }
            v["task"] = t;
        }
        Waiting::Claim { since, served } => {
            v["since"] = json!(rfc3339(*since));
            v["served"] = json!(served);
        }
        _ => {}
    }
    v
}

/// Runs `stent show`.
pub async fn run(ctx: &mut Context<'_>, args: ShowArgs) -> Result<(), CliError> {
    let id = super::execution_id(&args.id)?;
    let e = ctx.stent.state_of(id).await?;
    if ctx.json {
        return ctx.print_json(&execution_json(&e, true));
    }
    let style = ctx.style();
    let mut lines: Vec<(String, String)> = vec![
        ("execution".into(), e.id.to_string()),
        ("function".into(), escape_controls(&e.function)),
        ("state".into(), style.state(e.state.as_str())),
        (
            "queue".into(),
            format!("{} (priority {})", e.queue, e.priority),
        ),
    ];
    if !e.tags.is_empty() {
        lines.push(("tags".into(), e.tags.join(", ")));
    }
    if let Some(v) = &e.code_version {
        lines.push(("version".into(), escape_controls(v)));
    }
    if let Some(f) = e.forked_from {
        lines.push((
            "forked".into(),
            format!(
                "from execution {} at seq {} (seqs 0..{} copied)",
                f.execution, f.at.0, f.at.0
            ),
        ));
    }
    lines.push(("created".into(), datetime_text(e.created_at)));
    if let Some(t) = e.started_at {
        lines.push(("started".into(), datetime_text(t)));
    }
    if let Some(t) = e.completed_at {
        let took = (t - e.created_at).num_milliseconds();
        lines.push((
            "ended".into(),
            format!(
                "{} ({} after dispatch)",
                datetime_text(t),
                elapsed_text(took)
            ),
        ));
    }
    lines.push(("retries".into(), e.retries.to_string()));
    lines.push(("progress".into(), e.progress_str.clone()));
    if let Some(why) = &e.corrupt {
        lines.push(("corrupt".into(), style.bad(&escape_controls(why))));
    }
    for (name, value) in &e.counters {
        lines.push(("counter".into(), format!("{name} = {}", number(*value))));
    }
    for (key, value) in &e.custom_state {
        lines.push((
            "custom".into(),
            format!("{key} = {}", payload_text(value, 200)),
        ));
    }
    if let Some(i) = &e.interruption {
        lines.push(("why".into(), style.bad(&escape_controls(&i.to_string()))));
    }
    match &e.result {
        Some(Ok(value)) => lines.push(("result".into(), style.good(&payload_text(value, 2000)))),
        Some(Err(failure)) => lines.push(("error".into(), style.bad(&failure_text(failure, 2000)))),
        None => {}
    }
    if let Some(report) = &e.pause_report {
        // The first line says what happened; the field diffs follow, one a line.
        let mut report_lines = report.lines();
        let first = report_lines.next().unwrap_or_default();
        lines.push(("paused".into(), style.bad(&escape_controls(first))));
        for diff in report_lines {
            lines.push(("diff".into(), escape_controls(diff.trim_start())));
        }
    }
    for w in &e.waits {
        let place = if w.invocation == e.id.root_invocation() {
            String::new()
        } else {
            format!(" (in {})", w.invocation)
        };
        lines.push(("waiting".into(), escape_controls(&format!("{w}{place}"))));
    }
    for s in &e.unconsumed_signals {
        lines.push((
            "signal".into(),
            format!(
                "{} sent, not taken by a wait yet: {}",
                escape_controls(&format!("{:?}", s.name)),
                payload_text(&Payload::from_bytes(s.payload.clone()), 200)
            ),
        ));
    }
    let mut text = String::new();
    for (label, value) in &lines {
        text.push_str(&format!(
            "{} {value}\n",
            style.bold(&format!("{label:<10}"))
        ));
    }
    if !e.progress.is_empty() {
        text.push_str(&format!("{}\n", style.bold("calls")));
        let mut table = Table::new(&["SEQ", "FUNCTION", "STATE", "STARTED", "TOOK"]);
        // A call without a result says where its task stands.
        let tasks: std::collections::HashMap<_, _> = e
            .waits
            .iter()
            .filter_map(|w| match &w.what {
                Waiting::Call { child, task, .. } => Some((*child, task)),
                _ => None,
            })
            .collect();
        for p in &e.progress {
            let task = p.child.and_then(|c| tasks.get(&c));
            let state = match (p.state, p.cached, task) {
                (ProgressState::Completed, true, _) => style.good("cached"),
                (ProgressState::Scheduled, _, Some(CallTask::DeadLettered { .. })) => {
                    style.bad("dead-lettered")
                }
                (ProgressState::Scheduled, _, Some(t)) => style.state(t.kind()),
                (s, _, _) => style.state(s.as_str()),
            };
            let took = p
                .completed_at
                .map(|t| elapsed_text((t - p.started_at).num_milliseconds()))
                .unwrap_or_default();
            let indent = if p.invocation == e.id.root_invocation() {
                ""
            } else {
                "  "
            };
            table.row(vec![
                format!("{indent}{}", p.seq.0),
                format!(
                    "{indent}{}",
                    match &p.function {
                        Some(f) => escape_controls(f),
                        // A cache hit journaled before hits named their
                        // function: its call key is all there is.
                        None => format!("(call #{})", p.call_key.short()),
                    }
                ),
                state,
                datetime_text(p.started_at),
                took,
            ]);
        }
        for line in table.render(style).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    ctx.print(&text)
}
