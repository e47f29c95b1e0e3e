//! `stent replay ID | --file FILE [--all] [--step] [--break-at SEQ]`: re-run
//! a recorded journal against the code of this binary (see
//! [`stent::debugger`]). Exit code 0 when it replays cleanly, 3 when it
//! diverges.

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use serde_json::{Value as Json, json};
use stent::debugger::{
    DebugError, Divergence, DivergenceReason, ExportExt, InvocationOutcome, JournalExport,
    ReplayMode, ReplayReport, Replayer, StepSession,
};
use stent::journal::{Seq, Serializer};

use crate::commands::execution_id;
use crate::render::event_json;
use crate::{CliError, Context};

/// Arguments of `stent replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The execution to replay, read from the database.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub id: Option<String>,
    /// Replay an exported journal (`stent journal ID --export FILE`)
    /// instead; no database is opened.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// List every divergence, going on past each with the recorded answer
    /// (default: stop at the first).
    #[arg(long)]
    pub all: bool,
    /// Step through the durable effects: n(ext), c(ontinue), p(rint), q(uit),
    /// read from standard input (scriptable when it is not a terminal).
    /// Goes on past divergences, as --all does. With --json the session
    /// talks on standard error.
    #[arg(long)]
    pub step: bool,
    /// Stop the stepper at this seq (of any invocation); repeatable.
    #[arg(long = "break-at", value_name = "SEQ")]
    pub break_at: Vec<u32>,
    /// Also re-run invocations that performed no durable effect (their
    /// bodies run for real: only for code without outside side effects).
    #[arg(long)]
    pub rerun_leaves: bool,
    /// The serializer the execution was recorded with (the executor's
    /// `serializer`): `cbor` (the default) or `json`.
    #[arg(long, value_name = "cbor|json", default_value = "cbor")]
    pub serializer: String,
}

impl ReplayArgs {
    /// True when the journal comes from a file, not the database.
    pub fn offline(&self) -> bool {
        self.file.is_some()
    }
}

/// A debugger error as the command line reports it.
pub(crate) fn debug_error(e: DebugError) -> CliError {
    match e {
        DebugError::Engine(e) => CliError::from(e),
        other => CliError::Invalid(other.to_string()),
    }
}

/// Runs `stent replay`.
pub async fn run(ctx: &mut Context<'_>, args: ReplayArgs) -> Result<(), CliError> {
    let export = match (&args.file, &args.id) {
        (Some(path), _) => JournalExport::read_from(path).map_err(debug_error)?,
        (None, Some(id)) => {
            let id = execution_id(id)?;
            JournalExport::from_stent(&ctx.stent, id)
                .await
                .map_err(debug_error)?
        }
        (None, None) => {
            return Err(CliError::Invalid(
                "give an execution id or --file FILE".into(),
            ));
        }
    };
    let serializer: Serializer = args
        .serializer
        .parse()
        .map_err(|e| CliError::Invalid(format!("--serializer {:?}: {e}", args.serializer)))?;
    let mut replayer = Replayer::for_stent(&ctx.stent)
        .serializer(serializer)
        // Stepping goes on past a divergence: the person decides when to stop.
        .mode(if args.all || args.step {
            ReplayMode::All
        } else {
            ReplayMode::StopAtFirst
        })
        .rerun_leaves(args.rerun_leaves);
    for seq in &args.break_at {
        replayer = replayer.break_at(Seq(*seq));
    }
    if args.step || !args.break_at.is_empty() {
        let stdin = std::io::stdin();
        let scripted = !stdin.is_terminal();
        // The session talks to the terminal directly: prompts must show
        // before each read, whatever `out` buffers. With --json it uses
        // standard error, so standard output stays one JSON document.
        let talk: Box<dyn Write + Send> = if ctx.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        let session = StepSession::new(BufReader::new(stdin), talk).echo(scripted);
        replayer = replayer.stepper(Arc::new(Mutex::new(session)));
    }
    let report = replayer.replay(&export).await.map_err(debug_error)?;
    if ctx.json {
        ctx.print_json(&report_json(&report))?;
    } else {
        print_report(ctx, &report)?;
    }
    if report.is_clean() {
        Ok(())
    } else if report.quit {
        Err(CliError::Diverged(format!(
            "the stepping session quit before the end of the replay ({} divergence(s) found before)",
            report.divergences.len()
        )))
    } else {
        let n = report.divergences.len();
        let first = report
            .first_divergence()
            .map(|d| format!("invocation {} seq {}", d.invocation, d.seq))
            .unwrap_or_default();
        Err(CliError::Diverged(format!(
            "execution {} does not replay against this code: {n} divergence(s), the first at {first}",
            report.execution
        )))
    }
}

fn print_report(ctx: &mut Context<'_>, report: &ReplayReport) -> Result<(), CliError> {
    let style = ctx.style();
    let verdict = if report.is_clean() {
        style.good("replays cleanly")
    } else if report.quit {
        style.busy("quit")
    } else {
        style.bad("DIVERGES")
    };
    ctx.line(&format!(
        "{} {} ({}): {verdict}",
        style.bold("execution"),
        report.execution,
        report.function
    ))?;
    for inv in &report.invocations {
        let outcome = match &inv.outcome {
            InvocationOutcome::Clean => style.good("clean"),
            InvocationOutcome::Diverged => style.bad("diverged"),
            InvocationOutcome::CaughtUp { next_seq } => {
                format!("clean up to seq {next_seq} (had not finished)")
            }
            InvocationOutcome::Skipped => style.dim("not re-run (no durable effects)"),
            InvocationOutcome::NotReached => style.dim("not reached"),
            InvocationOutcome::Quit => style.busy("quit"),
            _ => String::from("?"),
        };
        ctx.line(&format!(
            "  {} {} ({} events): {outcome}",
            inv.invocation, inv.function, inv.recorded_events
        ))?;
    }
    for (n, d) in report.divergences.iter().enumerate() {
        ctx.line(&format!("{}. {d}", n + 1))?;
    }
    Ok(())
}

fn reason_json(reason: &DivergenceReason) -> Json {
    match reason {
        DivergenceReason::Mismatch => json!({"kind": "mismatch"}),
        DivergenceReason::Reordered { recorded_at } => {
            json!({"kind": "reordered", "recorded_at": recorded_at.0})
        }
        DivergenceReason::Result => json!({"kind": "result"}),
        DivergenceReason::Aborted(m) => json!({"kind": "aborted", "message": m}),
        DivergenceReason::Stuck => json!({"kind": "stuck"}),
        DivergenceReason::Inconsistent(m) => json!({"kind": "inconsistent", "message": m}),
        DivergenceReason::PatchRemoved { patch } => {
            json!({"kind": "patch_removed", "patch": patch})
        }
        _ => json!({"kind": "other"}),
    }
}

/// A divergence as JSON (`replay --json`, `deploy-check --json`).
pub(crate) fn divergence_json(d: &Divergence) -> Json {
    let event = |e: &Option<stent::journal::Event>| match e {
        Some(e) => {
            let mut v = event_json(e);
            if let Json::Object(map) = &mut v {
                map.insert("kind".into(), json!(e.kind().as_str()));
            }
            v
        }
        None => Json::Null,
    };
    json!({
        "invocation": d.invocation.to_string(),
        "function": d.function,
        "seq": d.seq.0,
        "reason": reason_json(&d.reason),
        "recorded": event(&d.recorded),
        "asked": event(&d.asked),
        "diffs": d.diffs.iter().map(|f| json!({
            "path": f.path,
            "recorded": f.recorded,
            "asked": f.asked,
        })).collect::<Vec<_>>(),
        "message": d.to_string(),
    })
}

fn outcome_json(outcome: &InvocationOutcome) -> Json {
    match outcome {
        InvocationOutcome::Clean => json!("clean"),
        InvocationOutcome::Diverged => json!("diverged"),
        InvocationOutcome::CaughtUp { next_seq } => json!({"caught_up": next_seq.0}),
        InvocationOutcome::Skipped => json!("skipped"),
        InvocationOutcome::NotReached => json!("not_reached"),
        InvocationOutcome::Quit => json!("quit"),
        _ => json!("other"),
    }
}

/// The report as JSON.
pub fn report_json(report: &ReplayReport) -> Json {
    json!({
        "execution": report.execution.to_string(),
        "function": report.function,
        "mode": match report.mode {
            ReplayMode::All => "all",
            _ => "first",
        },
        "clean": report.is_clean(),
        "quit": report.quit,
        "invocations": report.invocations.iter().map(|i| json!({
            "invocation": i.invocation.to_string(),
            "function": i.function,
            "recorded_events": i.recorded_events,
            "outcome": outcome_json(&i.outcome),
        })).collect::<Vec<_>>(),
        "divergences": report.divergences.iter().map(divergence_json).collect::<Vec<_>>(),
    })
}
