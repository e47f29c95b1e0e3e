//! `stent journal ID`: an execution's journal as a timeline, as JSON, or
//! exported to a self-describing CBOR file.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value as Json, json};
use stent::journal::event::Event;
use stent::journal::export::JournalExport;
use stent::journal::store::JournalRow;
use stent::journal::{InvocationId, Seq};

use crate::render::{
    context_write_text, cut, elapsed_text, event_json, failure_text, payload_text, time_json,
    time_text,
};
use crate::{CliError, Context};

/// Arguments of `stent journal`.
#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// The execution id.
    pub id: String,
    /// Longest decoded value shown on a timeline line (in characters).
    #[arg(long, default_value_t = 60)]
    pub width: usize,
    /// Write every invocation's journal to FILE (a self-describing,
    /// versioned CBOR document that `replay --file` reads) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

/// One decoded row (or the reason it does not decode).
struct Row {
    seq: Seq,
    kind: String,
    recorded_at: stent::journal::Timestamp,
    event: Result<Event, String>,
}

fn decode(invocation: InvocationId, rows: Vec<JournalRow>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| Row {
            seq: r.seq,
            kind: r.kind,
            recorded_at: r.recorded_at,
            event: Event::decode(&r.bytes).map_err(|e| {
                format!(
                    "undecodable event of invocation {invocation} at seq {}: {e}",
                    r.seq
                )
            }),
        })
        .collect()
}

/// Runs `stent journal`.
pub async fn run(ctx: &mut Context<'_>, args: JournalArgs) -> Result<(), CliError> {
    let id = super::execution_id(&args.id)?;
    let backend = ctx.stent.backend().clone();
    let record = backend
        .execution(id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("execution {id} not found")))?;
    let groups = backend.read_execution_journal(id, None).await?;

    if let Some(path) = &args.export {
        let invocations = groups.len();
        let events: usize = groups.iter().map(|(_, rows)| rows.len()).sum();
        let export = JournalExport::new(record, groups)
            .map_err(|e| CliError::Invalid(format!("cannot export execution {id}: {e}")))?;
        let bytes = export
            .to_bytes()
            .map_err(|e| CliError::Invalid(format!("cannot export execution {id}: {e}")))?;
        std::fs::write(path, &bytes)
            .map_err(|e| CliError::Invalid(format!("cannot write {}: {e}", path.display())))?;
        if ctx.json {
            return ctx.print_json(&json!({
                "execution": id.to_string(),
                "exported": path.display().to_string(),
                "invocations": invocations,
                "events": events,
                "bytes": bytes.len(),
            }));
        }
        return ctx.line(&format!(
            "exported {events} event(s) of {invocations} invocation(s) of execution {id} to {} ({} bytes)",
            path.display(),
            bytes.len()
        ));
    }

    let root = id.root_invocation();
    let mut journals: HashMap<InvocationId, Vec<Row>> = HashMap::new();
    let mut order = Vec::new();
    for (invocation, rows) in groups {
        order.push(invocation);
        journals.insert(invocation, decode(invocation, rows));
    }
    // Which invocation each child belongs under: (parent, seq of its call).
    let mut parents: HashMap<InvocationId, (InvocationId, Seq)> = HashMap::new();
    for (invocation, rows) in &journals {
        for row in rows {
            if let Ok(Event::CallScheduled { child, .. }) = &row.event {
                parents.insert(*child, (*invocation, row.seq));
            }
        }
    }

    if ctx.json {
        let mut invocations = Vec::new();
        for invocation in &order {
            let rows = &journals[invocation];
            let depth = depth_of(*invocation, &parents);
            let events: Vec<Json> = rows
                .iter()
                .map(|r| {
                    let event = match &r.event {
                        Ok(e) => event_json(e),
                        Err(msg) => json!({"error": msg}),
                    };
                    json!({"seq": r.seq.0, "kind": r.kind, "recorded_at": time_json(r.recorded_at),
                           "event": event})
                })
                .collect();
            let parent = parents
                .get(invocation)
                .map(|(p, seq)| json!({"invocation": p.to_string(), "seq": seq.0}));
            invocations.push(json!({
                "invocation": invocation.to_string(),
                "parent": parent,
                "depth": depth,
                "events": events,
            }));
        }
        return ctx.print_json(&json!({
            "execution": id.to_string(),
            "function": record.function,
            "state": record.status.as_str(),
            "invocations": invocations,
        }));
    }

    let style = ctx.style();
    let mut text = format!(
        "{} {} {} ({})\n",
        style.bold("execution"),
        id,
        record.function,
        style.state(record.status.as_str())
    );
    let first = journals.get(&root).and_then(|rows| rows.first());
    if let Some(first) = first {
        text.push_str(&format!(
            "{} {} UTC\n",
            style.bold("started  "),
            time_text(first.recorded_at)
        ));
    }
    let fork = match first.map(|r| &r.event) {
        Some(Ok(Event::Started {
            forked_from: Some(origin),
            ..
        })) => Some(*origin),
        _ => None,
    };
    if let Some(origin) = fork {
        text.push_str(&format!(
            "{} from execution {} at seq {}: seqs 1..{} are copies of its journal, \
             recorded at the fork\n",
            style.bold("forked   "),
            origin.execution,
            origin.at.0,
            origin.at.0
        ));
    }
    text.push_str(&style.bold("SEQ  TIME          KIND            DETAIL"));
    text.push('\n');
    let mut printer = Printer {
        copied: fork.map(|origin| (root, origin.at)),
        journals: &journals,
        visited: HashSet::new(),
        width: args.width,
        style,
        text,
    };
    printer.invocation(root, 0);
    let orphans: Vec<InvocationId> = order
        .iter()
        .copied()
        .filter(|i| !printer.visited.contains(i))
        .collect();
    for invocation in orphans {
        let line = format!("invocation {invocation} (not reached from the root's journal)\n");
        printer.text.push_str(&style.dim(&line));
        printer.invocation(invocation, 1);
    }
    let text = printer.text;
    ctx.print(&text)
}

fn depth_of(
    mut invocation: InvocationId,
    parents: &HashMap<InvocationId, (InvocationId, Seq)>,
) -> usize {
    let mut depth = 0;
    while let Some((parent, _)) = parents.get(&invocation) {
        depth += 1;
        invocation = *parent;
        if depth > 10_000 {
            break;
        }
    }
    depth
}

struct Printer<'a> {
    /// The root of a fork and the first seq it did not copy.
    copied: Option<(InvocationId, Seq)>,
    journals: &'a HashMap<InvocationId, Vec<Row>>,
    visited: HashSet<InvocationId>,
    width: usize,
    style: crate::render::Style,
    text: String,
}

impl Printer<'_> {
    fn invocation(&mut self, invocation: InvocationId, depth: usize) {
        if !self.visited.insert(invocation) {
            return;
        }
        let Some(rows) = self.journals.get(&invocation) else {
            return;
        };
        let indent = "    ".repeat(depth);
        // What each command seq asked for, to name its resolution.
        let mut asked: HashMap<Seq, String> = HashMap::new();
        let mut timers: HashMap<Seq, stent::journal::Timestamp> = HashMap::new();
        for row in rows {
            // A fork's copies carry the fork's time, not the original's: no
            // timer length is measured from them.
            let copy = self
                .copied
                .is_some_and(|(root, at)| root == invocation && row.seq.0 > 0 && row.seq < at);
            let detail = match &row.event {
                Err(msg) => self.style.bad(msg),
                Ok(event) => {
                    match event {
                        Event::CallScheduled { function, .. } => {
                            asked.insert(row.seq, function.clone());
                        }
                        Event::SignalAwaited { name } => {
                            asked.insert(row.seq, format!("signal {name:?}"));
                        }
                        Event::TimerStarted { .. } if !copy => {
                            timers.insert(row.seq, row.recorded_at);
                        }
                        _ => {}
                    }
                    self.detail(event, &asked, &timers, row.recorded_at)
                }
            };
            let detail = if copy {
                format!("{detail} {}", self.style.dim("(copied)"))
            } else {
                detail
            };
            let kind = match &row.event {
                Ok(Event::Completed { .. }) => self.style.good(&format!("{:<15}", row.kind)),
                Ok(
                    Event::Failed { .. }
                    | Event::CallFailed { .. }
                    | Event::Cancelled { .. }
                    | Event::TimedOut { .. },
                ) => self.style.bad(&format!("{:<15}", row.kind)),
                _ => format!("{:<15}", row.kind),
            };
            let line = format!(
                "{indent}{:>3}  {}  {kind} {detail}",
                row.seq.0,
                row.recorded_at.to_datetime().format("%H:%M:%S%.3f"),
            );
            self.text.push_str(line.trim_end());
            self.text.push('\n');
            if let Ok(Event::CallScheduled { child, .. }) = &row.event {
                self.invocation(*child, depth + 1);
            }
        }
    }

    fn detail(
        &self,
        event: &Event,
        asked: &HashMap<Seq, String>,
        timers: &HashMap<Seq, stent::journal::Timestamp>,
        at: stent::journal::Timestamp,
    ) -> String {
        let w = self.width;
        let name = |seq: &Seq| {
            asked
                .get(seq)
                .cloned()
                .unwrap_or_else(|| format!("seq {}", seq.0))
        };
        match event {
            Event::Started {
                function,
                version,
                args,
                ..
            } => {
                let version = version
                    .as_ref()
                    .map(|v| format!("@{v}"))
                    .unwrap_or_default();
                format!("{function}{version} args {}", payload_text(args, w))
            }
            Event::CallScheduled {
                function,
                call_key,
                args,
                ..
            } => format!(
                "{function} {} args {}",
                self.style.dim(&format!("#{}", call_key.short())),
                payload_text(args, w)
            ),
            Event::CallCompleted { scheduled, value } => format!(
                "{} (seq {}) -> {}",
                name(scheduled),
                scheduled.0,
                payload_text(value, w)
            ),
            Event::CallFailed { scheduled, failure } => format!(
                "{} (seq {}) failed: {}",
                name(scheduled),
                scheduled.0,
                failure_text(failure, w)
            ),
            Event::CacheHit {
                call_key,
                function,
                value,
                ..
            } => format!(
                "{}{} -> {}",
                function
                    .as_deref()
                    .map(|f| format!("{f} "))
                    .unwrap_or_default(),
                self.style.dim(&format!("#{}", call_key.short())),
                payload_text(value, w)
            ),
            Event::TimerStarted {
                fire_at,
                duration_ms,
            } => format!(
                "sleep {} until {}",
                elapsed_text(i64::try_from(*duration_ms).unwrap_or(i64::MAX)),
                time_text(*fire_at)
            ),
            Event::TimerFired { started } => {
                let slept = timers
                    .get(started)
                    .map(|t| format!(" after {}", elapsed_text(at.0 - t.0)))
                    .unwrap_or_default();
                format!("timer of seq {}{slept}", started.0)
            }
            Event::SignalAwaited { name } => format!("wait for signal {name:?}"),
            Event::SignalReceived { awaited, payload } => format!(
                "{} (seq {}) <- {}",
                name(awaited),
                awaited.0,
                payload_text(payload, w)
            ),
            Event::ContextWrite { write } => context_write_text(write, w),
            Event::SideEffect { value } => format!("value {}", payload_text(value, w)),
            Event::PatchMarker { patch } => format!("new branch of patch {:?}", cut(patch, w)),
            Event::Completed { value } => format!("-> {}", payload_text(value, w)),
            Event::Failed { failure } => format!("failed: {}", failure_text(failure, w)),
            Event::Cancelled { reason } => match reason {
                Some(reason) => format!("reason: {}", cut(reason, w)),
                None => String::new(),
            },
            Event::TimedOut { deadline } => match deadline {
                Some(d) => format!("deadline {} passed", time_text(*d)),
                None => String::new(),
            },
            other => cut(&format!("{other:?}"), w),
        }
    }
}
