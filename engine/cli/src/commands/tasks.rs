//! `stent tasks list|show`: the rows of the work queue.

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use stent::records::{TaskFilter, TaskRecord, TaskState};

use crate::render::{Table, cut, escape_controls, time_json, time_text};
use crate::{CliError, Context};

/// `stent tasks` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TasksCommand {
    /// List tasks in creation order.
    List(TasksListArgs),
    /// Show one task.
    Show(TasksShowArgs),
}

/// Arguments of `stent tasks list`.
#[derive(Debug, Clone, Args)]
pub struct TasksListArgs {
    /// Only the tasks of this execution.
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Only tasks in this state (ready, leased, waiting, done, paused, dead,
    /// cancelled).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only tasks in this queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Most tasks to list.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Tasks to skip (for paging).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
}

/// Arguments of `stent tasks show`.
#[derive(Debug, Clone, Args)]
pub struct TasksShowArgs {
    /// The task id (its invocation id).
    pub id: String,
}

/// Parses a task state name.
pub fn parse_task_state(name: &str) -> Result<TaskState, CliError> {
    TaskState::parse(name).ok_or_else(|| {
        let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
        CliError::Invalid(format!(
            "unknown task state {name:?}; one of: {}",
            names.join(", ")
        ))
    })
}

/// A task as JSON.
pub fn task_json(t: &TaskRecord) -> Json {
    json!({
        "id": t.invocation.to_string(),
        "execution": t.execution.to_string(),
        "function": t.function,
        "queue": t.routing.queue,
        "priority": t.routing.priority,
        "tags": t.routing.tags,
        "state": t.state.as_str(),
        "run_at": time_json(t.run_at),
        "lease_owner": t.lease_owner.as_ref().map(|w| w.as_str().to_string()),
        "lease_until": t.lease_until.map(time_json),
        "epoch": t.epoch.0,
        "attempts": t.attempts,
        "retries": t.retries,
        "last_failure": t.last_failure.as_ref().map(|(at, error)| json!({
            "at": time_json(*at),
            "error": error,
        })),
    })
}

/// Runs `stent tasks ...`.
pub async fn run(ctx: &mut Context<'_>, cmd: TasksCommand) -> Result<(), CliError> {
    match cmd {
        TasksCommand::List(args) => list(ctx, args).await,
        TasksCommand::Show(args) => show(ctx, args).await,
    }
}

async fn list(ctx: &mut Context<'_>, args: TasksListArgs) -> Result<(), CliError> {
    let filter = TaskFilter::default()
        .execution(
            args.execution
                .as_deref()
                .map(super::execution_id)
                .transpose()?,
        )
        .state(args.state.as_deref().map(parse_task_state).transpose()?)
        .queue(args.queue)
        .limit(args.limit)
        .offset(args.offset);
    let tasks = ctx.stent.list_tasks(filter).await?;
    if ctx.json {
        return ctx.print_json(&Json::Array(tasks.iter().map(task_json).collect()));
    }
    if tasks.is_empty() {
        return ctx.line("no tasks");
    }
    let style = ctx.style();
    let mut table = Table::new(&[
        "TASK",
        "EXECUTION",
        "FUNCTION",
        "STATE",
        "QUEUE",
        "RUN AT",
        "WORKER",
        "RETRIES",
    ]);
    for t in &tasks {
        table.row(vec![
            t.invocation.to_string(),
            t.execution.to_string(),
            cut(&t.function, 40),
            style.state(t.state.as_str()),
            t.routing.queue.clone(),
            time_text(t.run_at),
            t.lease_owner
                .as_ref()
                .map(|w| w.as_str().to_string())
                .unwrap_or_else(|| "-".into()),
            t.retries.to_string(),
        ]);
    }
    let text = table.render(style);
    ctx.print(&text)
}

async fn show(ctx: &mut Context<'_>, args: TasksShowArgs) -> Result<(), CliError> {
    let id = super::invocation_id(&args.id)?;
    let Some(t) = ctx.stent.task(id).await? else {
        return Err(CliError::NotFound(format!("task {id} not found")));
    };
    let failures = ctx.stent.task_failures(id).await?;
    if ctx.json {
        let mut value = task_json(&t);
        if let Json::Object(map) = &mut value {
            map.insert(
                "failures".into(),
                failures
                    .iter()
                    .map(|f| json!({"attempt": f.attempt, "at": time_json(f.at), "error": f.error}))
                    .collect(),
            );
        }
        return ctx.print_json(&value);
    }
    let style = ctx.style();
    let mut lines = vec![
        ("task", t.invocation.to_string()),
        ("execution", t.execution.to_string()),
        ("function", escape_controls(&t.function)),
        ("state", style.state(t.state.as_str())),
        (
            "queue",
            format!("{} (priority {})", t.routing.queue, t.routing.priority),
        ),
    ];
    if !t.routing.tags.is_empty() {
        lines.push(("tags", t.routing.tags.join(", ")));
    }
    lines.push(("run at", time_text(t.run_at)));
    if let Some(owner) = &t.lease_owner {
        let until = t.lease_until.map(time_text).unwrap_or_default();
        lines.push((
            "lease",
            format!("{owner} until {until} (epoch {})", t.epoch.0),
        ));
    } else {
        lines.push(("epoch", t.epoch.0.to_string()));
    }
    lines.push(("attempts", t.attempts.to_string()));
    lines.push(("retries", t.retries.to_string()));
    // Each retried attempt's failure, oldest first; a store written before
    // failures were kept has only the last one.
    for f in &failures {
        lines.push((
            "failed",
            format!(
                "attempt {} at {}: {}",
                f.attempt,
                time_text(f.at),
                style.bad(&escape_controls(&f.error))
            ),
        ));
    }
    if let (true, Some((at, error))) = (failures.is_empty(), &t.last_failure) {
        lines.push((
            "failed",
            format!("{} {}", time_text(*at), style.bad(&escape_controls(error))),
        ));
    }
    let mut text = String::new();
    for (label, value) in lines {
        text.push_str(&format!(
            "{} {value}\n",
            style.bold(&format!("{label:<10}"))
        ));
    }
    ctx.print(&text)
}
