//! `stent cancel ID`: cancels an execution for good.

use clap::Args;
use serde_json::json;

use crate::{CliError, Context};

/// Arguments of `stent cancel`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The execution id.
    pub id: String,
    /// Why it is cancelled, recorded in its journal and shown by `stent
    /// show` (default: "stent cancel", with the user running it).
    #[arg(long)]
    pub reason: Option<String>,
}

/// Runs `stent cancel`. An execution that had already ended is left as it
/// is (exit code 0, and the output says so).
pub async fn run(ctx: &mut Context<'_>, args: CancelArgs) -> Result<(), CliError> {
    let id = super::execution_id(&args.id)?;
    let reason = args.reason.unwrap_or_else(default_reason);
    let cancelled = ctx.stent.cancel_with_reason(id, reason).await?.cancelled;
    let state = ctx.stent.state_of(id).await?.state;
    if ctx.json {
        return ctx.print_json(&json!({"execution": id.to_string(), "cancelled": cancelled,
                                      "state": state.as_str()}));
    }
    if cancelled {
        ctx.line(&format!("cancelled execution {id}"))
    } else {
        ctx.line(&format!(
            "execution {id} had already ended ({state}); nothing to cancel"
        ))
    }
}

/// "stent cancel", and by whom when the environment says (`USER`, or
/// `USERNAME` on Windows).
fn default_reason() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        Ok(user) if !user.trim().is_empty() => format!("stent cancel, by {}", user.trim()),
        _ => "stent cancel".to_string(),
    }
}
