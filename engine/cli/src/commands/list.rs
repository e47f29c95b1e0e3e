//! `stent list`: executions, newest first.

use clap::Args;
use serde_json::Value as Json;
use stent::ExecutionStatus;

use super::show::execution_json;
use crate::render::{Table, cut, datetime_text, escape_controls};
use crate::{CliError, Context};

/// Arguments of `stent list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only executions in this state (pending, running, completed, failed,
    /// timed_out, cancelled, paused).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Most executions to list (at least 1).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Executions to skip (for paging).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
}

/// Parses an execution state name.
pub fn parse_state(name: &str) -> Result<ExecutionStatus, CliError> {
    ExecutionStatus::parse(name).ok_or_else(|| {
        let names: Vec<&str> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
        CliError::Invalid(format!(
            "unknown execution state {name:?}; one of: {}",
            names.join(", ")
        ))
    })
}

/// Runs `stent list`.
pub async fn run(ctx: &mut Context<'_>, args: ListArgs) -> Result<(), CliError> {
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let executions = ctx
        .stent
        .list_executions(args.limit as usize, args.offset, state)
        .await?;
    if ctx.json {
        let items: Vec<Json> = executions
            .iter()
            .map(|e| execution_json(e, false))
            .collect();
        return ctx.print_json(&Json::Array(items));
    }
    if executions.is_empty() {
        return ctx.line("no executions");
    }
    let style = ctx.style();
    // The code version column only where versions are used.
    let versions = executions.iter().any(|e| e.code_version.is_some());
    let mut table = if versions {
        Table::new(&[
            "ID", "STATE", "FUNCTION", "QUEUE", "VERSION", "CREATED", "PROGRESS",
        ])
    } else {
        Table::new(&["ID", "STATE", "FUNCTION", "QUEUE", "CREATED", "PROGRESS"])
    };
    for e in &executions {
        // An execution whose stored data does not read is listed, marked,
        // with the reason where its progress would be.
        let (state, progress) = match &e.corrupt {
            Some(why) => (
                style.bad(&format!("{} (corrupt)", e.state.as_str())),
                cut(why, 60),
            ),
            // What a running execution waits for says more than a count.
            None => match e.waits.as_slice() {
                [] => (style.state(e.state.as_str()), e.progress_str.clone()),
                [first, rest @ ..] => (
                    style.state(e.state.as_str()),
                    escape_controls(&match rest.len() {
                        0 => format!("waiting: {first}"),
                        n => format!("waiting: {first} (+{n} more)"),
                    }),
                ),
            },
        };
        let mut row = vec![
            e.id.to_string(),
            state,
            cut(&e.function, 48),
            e.queue.clone(),
        ];
        if versions {
            row.push(cut(e.code_version.as_deref().unwrap_or("-"), 24));
        }
        row.extend([datetime_text(e.created_at), progress]);
        table.row(row);
    }
    let text = table.render(style);
    ctx.print(&text)
}
