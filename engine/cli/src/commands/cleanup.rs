//! `stent cleanup`: deletes executions that ended long ago.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::{CliError, Context};

/// Arguments of `stent cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Delete executions that ended more than this many days ago.
    #[arg(long, default_value_t = 7)]
    pub days: u64,
    /// Only count what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm `--days 0`: it deletes every ended execution, however recent.
    #[arg(long)]
    pub force: bool,
}

/// Runs `stent cleanup`.
pub async fn run(ctx: &mut Context<'_>, args: CleanupArgs) -> Result<(), CliError> {
    if args.days == 0 && !args.dry_run && !args.force {
        return Err(CliError::Invalid(
            "--days 0 deletes every execution that has ended, however recently, with its \
             journal; add --force to do so (or --dry-run to count them first)"
                .into(),
        ));
    }
    let older_than = Duration::from_secs(args.days.saturating_mul(86_400));
    let counts = ctx.stent.cleanup(older_than, args.dry_run).await?;
    if ctx.json {
        return ctx.print_json(&json!({
            "dry_run": args.dry_run,
            "days": args.days,
            "executions": counts.executions,
            "tasks": counts.tasks,
            "events": counts.events,
        }));
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    ctx.line(&format!(
        "{verb} {} execution(s), {} task(s), {} journal event(s) that ended more than {} day(s) ago",
        counts.executions, counts.tasks, counts.events, args.days
    ))
}
