//! `stent ui`: serves the web console (see [`crate::ui`]) until interrupted.

use std::net::SocketAddr;

use clap::Args;

use crate::ui::{UiConfig, is_loopback, new_token, router};
use crate::{CliError, Context};

/// Arguments of `stent ui`.
#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    /// Where to listen. Any address but a loopback one (127.0.0.1, ::1)
    /// needs a token: `--token`, or one made up and printed with the URL.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Serve no write route at all (no signal, cancel or resume).
    #[arg(long)]
    pub read_only: bool,
    /// Require this token on every request (`Authorization: Bearer T`, or
    /// once as `?token=T` in the URL, which sets a cookie).
    #[arg(long, env = "STENT_UI_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Runs `stent ui`.
pub async fn run(ctx: &mut Context<'_>, args: UiArgs) -> Result<(), CliError> {
    let token = match (&args.token, is_loopback(&args.listen)) {
        (Some(t), _) if t.trim().is_empty() => {
            return Err(CliError::Invalid("--token is empty".into()));
        }
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        (None, false) => Some(new_token()),
    };
    let config = UiConfig::new()
        .with_read_only(args.read_only)
        .with_token_opt(token.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Invalid(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    let url = match &token {
        Some(t) => format!("http://{addr}/?token={t}"),
        None => format!("http://{addr}/"),
    };
    let mode = if args.read_only { " (read-only)" } else { "" };
    ctx.line(&format!("stent console{mode} on {url}"))?;
    ctx.out.flush()?;
    let app = router(ctx.stent.clone(), config);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
