//! `stent cancel ID`: cancels an execution for good.

use clap::Args;
use serde_json::json;

use crate::{CliError, Context};

/// Arguments of `stent cancel`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The execution id.
    pub id: String,
}

/// Runs `stent cancel`. An execution that had already ended is left as it
/// is (exit code 0, and the output says so).
pub async fn run(ctx: &mut Context<'_>, args: CancelArgs) -> Result<(), CliError> {
    let id = super::execution_id(&args.id)?;
    let cancelled = ctx.stent.cancel(id).await?;
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
