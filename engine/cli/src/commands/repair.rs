//! `stent resume ID` and `stent fork ID --at SEQ`: the repair path after a
//! fix (see [`stent::Stent::resume`] and [`stent::Stent::fork`]).

use clap::Args;
use serde_json::json;
use stent::journal::Seq;

use crate::commands::execution_id;
use crate::{CliError, Context};

/// Arguments of `stent resume`.
#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// The paused execution.
    pub id: String,
}

/// Arguments of `stent fork`.
#[derive(Debug, Clone, Args)]
pub struct ForkArgs {
    /// The execution to fork.
    pub id: String,
    /// Keep the root journal's events before this seq; run the rest on this
    /// binary's code (the seq of the first divergence `stent replay` shows
    /// is usually right).
    #[arg(long, value_name = "SEQ")]
    pub at: u32,
}

/// Runs `stent resume`.
pub async fn resume(ctx: &mut Context<'_>, args: ResumeArgs) -> Result<(), CliError> {
    let id = execution_id(&args.id)?;
    ctx.stent.resume(id).await?;
    if ctx.json {
        return ctx.print_json(&json!({"execution": id.to_string(), "resumed": true}));
    }
    ctx.line(&format!(
        "resumed execution {id}: a worker replays it on the code it runs"
    ))
}

/// Runs `stent fork`.
pub async fn fork(ctx: &mut Context<'_>, args: ForkArgs) -> Result<(), CliError> {
    let id = execution_id(&args.id)?;
    let forked = ctx.stent.fork(id, Seq(args.at)).await?;
    if ctx.json {
        return ctx.print_json(&json!({
            "execution": id.to_string(),
            "at": args.at,
            "forked": forked.to_string(),
        }));
    }
    ctx.line(&format!(
        "forked execution {id} at seq {} as {forked}: seqs 0..{} are kept, the rest runs on the code of the worker that claims it",
        args.at, args.at
    ))
}
