//! `stent dlq ...`: dead letters — invocations suspended after running out of
//! attempts, waiting for a person to replay or discard them.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use stent::records::DeadLetterRecord;

use crate::render::{Table, cut, escape_controls, time_json, time_text};
use crate::{CliError, Context};

/// `stent dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List(DlqListArgs),
    /// Show one dead letter.
    Show(DlqIdArgs),
    /// Run a dead-lettered invocation again from where it stopped (its
    /// journal is kept, so completed calls are not repeated).
    Replay(DlqReplayArgs),
    /// Give up on a dead letter: its caller (or, for a root, the execution)
    /// fails.
    Discard(DlqDiscardArgs),
    /// Replay every dead letter.
    ReplayAll(DlqReplayAllArgs),
}

/// Arguments of `stent dlq list`.
#[derive(Debug, Clone, Args)]
pub struct DlqListArgs {
    /// Most dead letters to list.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// A dead letter's id.
#[derive(Debug, Clone, Args)]
pub struct DlqIdArgs {
    /// The dead-lettered task's id.
    pub id: String,
}

/// Arguments of `stent dlq replay`.
#[derive(Debug, Clone, Args)]
pub struct DlqReplayArgs {
    /// The dead-lettered task's id.
    pub id: String,
    /// Run it in this queue instead of its own.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Give it its full retry budget again.
    #[arg(long)]
    pub reset_retries: bool,
}

/// Arguments of `stent dlq discard`.
#[derive(Debug, Clone, Args)]
pub struct DlqDiscardArgs {
    /// The dead-lettered task's id.
    pub id: String,
    /// Do not ask for confirmation (required when standard input is not a
    /// terminal).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `stent dlq replay-all`.
#[derive(Debug, Clone, Args)]
pub struct DlqReplayAllArgs {
    /// Run them in this queue instead of their own.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Give each its full retry budget again.
    #[arg(long)]
    pub reset_retries: bool,
}

/// A dead letter as JSON.
pub fn dead_letter_json(d: &DeadLetterRecord) -> Json {
    json!({
        "id": d.task.to_string(),
        "execution": d.execution.to_string(),
        "function": d.function,
        "queue": d.queue,
        "reason": d.reason,
        "retries": d.retries,
        "failed_at": time_json(d.failed_at),
    })
}

/// Runs `stent dlq ...`.
pub async fn run(ctx: &mut Context<'_>, cmd: DlqCommand) -> Result<(), CliError> {
    match cmd {
        DlqCommand::List(args) => list(ctx, args).await,
        DlqCommand::Show(args) => show(ctx, args).await,
        DlqCommand::Replay(args) => replay(ctx, args).await,
        DlqCommand::Discard(args) => discard(ctx, args).await,
        DlqCommand::ReplayAll(args) => replay_all(ctx, args).await,
    }
}

async fn list(ctx: &mut Context<'_>, args: DlqListArgs) -> Result<(), CliError> {
    let letters = ctx.stent.list_dead_letters(args.limit).await?;
    if ctx.json {
        return ctx.print_json(&Json::Array(letters.iter().map(dead_letter_json).collect()));
    }
    if letters.is_empty() {
        return ctx.line("no dead letters");
    }
    let style = ctx.style();
    let mut table = Table::new(&[
        "TASK",
        "EXECUTION",
        "FUNCTION",
        "QUEUE",
        "FAILED AT",
        "REASON",
    ]);
    for d in &letters {
        table.row(vec![
            d.task.to_string(),
            d.execution.to_string(),
            cut(&d.function, 40),
            d.queue.clone(),
            time_text(d.failed_at),
            style.bad(&cut(&d.reason, 60)),
        ]);
    }
    let text = table.render(style);
    ctx.print(&text)
}

async fn get(ctx: &Context<'_>, id: &str) -> Result<DeadLetterRecord, CliError> {
    let id = super::invocation_id(id)?;
    ctx.stent
        .get_dead_letter(id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("dead letter {id} not found")))
}

async fn show(ctx: &mut Context<'_>, args: DlqIdArgs) -> Result<(), CliError> {
    let d = get(ctx, &args.id).await?;
    if ctx.json {
        return ctx.print_json(&dead_letter_json(&d));
    }
    let style = ctx.style();
    let lines = [
        ("task", d.task.to_string()),
        ("execution", d.execution.to_string()),
        ("function", escape_controls(&d.function)),
        ("queue", d.queue.clone()),
        ("failed at", time_text(d.failed_at)),
        ("retries", d.retries.to_string()),
        ("reason", style.bad(&escape_controls(&d.reason))),
    ];
    let mut text = String::new();
    for (label, value) in lines {
        text.push_str(&format!(
            "{} {value}\n",
            style.bold(&format!("{label:<10}"))
        ));
    }
    ctx.print(&text)
}

async fn replay(ctx: &mut Context<'_>, args: DlqReplayArgs) -> Result<(), CliError> {
    let d = get(ctx, &args.id).await?;
    ctx.stent
        .replay_dead_letter(d.task, args.queue.as_deref(), args.reset_retries)
        .await?;
    let queue = args.queue.unwrap_or_else(|| d.queue.clone());
    if ctx.json {
        return ctx.print_json(&json!({"replayed": [d.task.to_string()], "queue": queue}));
    }
    ctx.line(&format!(
        "replayed dead letter {} ({}) in queue {queue}",
        d.task, d.function
    ))
}

async fn discard(ctx: &mut Context<'_>, args: DlqDiscardArgs) -> Result<(), CliError> {
    let d = get(ctx, &args.id).await?;
    if !args.force {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(CliError::Invalid(format!(
                "refusing to discard dead letter {} without confirmation; pass --force",
                d.task
            )));
        }
        eprint!(
            "Discard dead letter {} of {} ({})? Its caller fails. [y/N] ",
            d.task, d.function, d.reason
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return ctx.line("not discarded");
        }
    }
    let discarded = ctx.stent.discard_dead_letter(d.task).await?;
    if !discarded {
        return Err(CliError::NotFound(format!(
            "dead letter {} not found (replayed or discarded meanwhile)",
            d.task
        )));
    }
    if ctx.json {
        return ctx.print_json(&json!({"discarded": d.task.to_string()}));
    }
    ctx.line(&format!(
        "discarded dead letter {} ({})",
        d.task, d.function
    ))
}

async fn replay_all(ctx: &mut Context<'_>, args: DlqReplayAllArgs) -> Result<(), CliError> {
    let letters = ctx.stent.list_dead_letters(usize::MAX).await?;
    let mut replayed = Vec::new();
    for d in &letters {
        match ctx
            .stent
            .replay_dead_letter(d.task, args.queue.as_deref(), args.reset_retries)
            .await
        {
            Ok(_) => replayed.push(d.task),
            // Replayed or discarded by someone else meanwhile.
            Err(stent::Error::Backend(stent::journal::store::StoreError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if ctx.json {
        let ids: Vec<String> = replayed.iter().map(|t| t.to_string()).collect();
        return ctx.print_json(&json!({"replayed": ids}));
    }
    ctx.line(&format!("replayed {} dead letter(s)", replayed.len()))
}
