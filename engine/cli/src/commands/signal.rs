//! `stent signal ID NAME [PAYLOAD] [--key KEY]`: sends a signal to an
//! execution (once per key, with `--key`).

use clap::Args;
use serde_json::{Value as Json, json};

use crate::{CliError, Context};

/// Arguments of `stent signal`.
#[derive(Debug, Clone, Args)]
pub struct SignalArgs {
    /// The execution id.
    pub id: String,
    /// The signal name (what `Stent::wait_for_signal(name)` waits for).
    pub name: String,
    /// The payload: a string, or JSON with `--json-payload`. None sends
    /// null (what a wait for `()` expects).
    pub payload: Option<String>,
    /// Read PAYLOAD as JSON (objects, numbers, booleans, ...), for waits
    /// that expect a struct or a number.
    #[arg(long)]
    pub json_payload: bool,
    /// Store the signal at most once per execution and KEY: the same
    /// command run again (its first run's outcome unknown) sends nothing
    /// new, and succeeds even if the execution has taken it and ended.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

/// The payload to send, as a JSON value (encoded to CBOR on sending).
pub fn payload_of(payload: Option<&str>, json_payload: bool) -> Result<Json, CliError> {
    match (payload, json_payload) {
        (None, _) => Ok(Json::Null),
        (Some(text), false) => Ok(Json::String(text.to_string())),
        (Some(text), true) => serde_json::from_str(text).map_err(|e| {
            CliError::Invalid(format!(
                "--json-payload: {text:?} is not JSON ({e}); quote strings, e.g. '\"yes\"'"
            ))
        }),
    }
}

/// Runs `stent signal`.
pub async fn run(ctx: &mut Context<'_>, args: SignalArgs) -> Result<(), CliError> {
    let id = super::execution_id(&args.id)?;
    let payload = payload_of(args.payload.as_deref(), args.json_payload)?;
    match &args.key {
        Some(key) => {
            ctx.stent
                .send_signal_with_key(id, &args.name, &payload, key)
                .await?
        }
        None => ctx.stent.send_signal(id, &args.name, &payload).await?,
    }
    if ctx.json {
        return ctx.print_json(&json!({"execution": id.to_string(), "signal": args.name,
                                      "payload": payload, "key": args.key}));
    }
    ctx.line(&format!("sent signal {:?} to execution {id}", args.name))
}
