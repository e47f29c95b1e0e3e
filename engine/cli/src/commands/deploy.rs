//! `stent deploy-check [--finished-within 1d] [--function NAME]`: replay
//! every unfinished execution of the database against the code of this
//! binary and list each one that would pause on it (see
//! [`stent::debugger::DeployCheck`]). Reads only. Exit code 0 when every
//! execution replays, 3 when any would pause or needs a function this
//! binary lacks: run it in CI with the build about to be deployed.

use clap::Args;
use serde_json::{Value as Json, json};
use stent::debugger::{DeployCheck, DeployReport};

use crate::commands::replay::{debug_error, divergence_json};
use crate::{CliError, Context};

/// Arguments of `stent deploy-check`.
#[derive(Debug, Clone, Args)]
pub struct DeployCheckArgs {
    /// Also replay finished executions dispatched within this long
    /// (`90m`, `1d`): a later rollback or fork replays them too.
    #[arg(long, value_name = "DURATION")]
    pub finished_within: Option<String>,
    /// Only executions of this root function.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Executions replayed at a time.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    /// The code version of the build being checked: only executions its
    /// workers would claim are checked (of this version, of `--also-runs`,
    /// or not pinned yet).
    #[arg(long, value_name = "VERSION")]
    pub code_version: Option<String>,
    /// Check executions of every code version (the default without
    /// `--code-version`).
    #[arg(long)]
    pub all_versions: bool,
    /// Also check executions pinned to this code version (repeatable): the
    /// workers will run them too.
    #[arg(long = "also-runs", value_name = "VERSION")]
    pub also_runs: Vec<String>,
}

/// Runs `stent deploy-check`.
pub async fn run(ctx: &mut Context<'_>, args: DeployCheckArgs) -> Result<(), CliError> {
    let mut check = DeployCheck::new()
        .concurrency(args.concurrency)
        .also_runs(args.also_runs.clone());
    if let Some(version) = &args.code_version {
        check = check.code_version(version.clone());
    }
    if args.all_versions {
        check = check.all_versions();
    }
    if let Some(text) = &args.finished_within {
        let window = stent::journal::parse_duration(text)
            .map_err(|e| CliError::Invalid(format!("--finished-within {text:?}: {e}")))?;
        check = check.include_finished(window);
    }
    if let Some(function) = &args.function {
        check = check.function(function.clone());
    }
    let report = check.run(&ctx.stent).await.map_err(debug_error)?;
    if ctx.json {
        ctx.print_json(&report_json(&report))?;
    } else {
        print_report(ctx, &report)?;
    }
    if report.is_safe() {
        Ok(())
    } else {
        Err(CliError::Diverged(format!(
            "{} execution(s) would pause on this code and {} need a function it lacks: do not deploy it yet",
            report.would_pause.len(),
            report.missing_functions.len()
        )))
    }
}

fn print_report(ctx: &mut Context<'_>, report: &DeployReport) -> Result<(), CliError> {
    let style = ctx.style();
    let verdict = if report.is_safe() {
        style.good("safe to deploy")
    } else {
        style.bad("NOT SAFE")
    };
    ctx.line(&format!(
        "{} executions replayed in {:.2} s: {verdict}",
        report.checked,
        report.elapsed.as_secs_f64()
    ))?;
    ctx.line(&format!(
        "  {} clean, {} would pause, {} need a missing function",
        report.clean,
        report.would_pause.len(),
        report.missing_functions.len()
    ))?;
    if report.other_versions > 0 {
        ctx.line(&format!(
            "  {} execution(s) of other code versions not checked (--all-versions checks them)",
            report.other_versions
        ))?;
    }
    for id in &report.would_resume {
        ctx.line(&format!(
            "  {} {id}: paused now, replays cleanly on this code (`stent resume {id}` after the deploy)",
            style.good("would resume")
        ))?;
    }
    for p in &report.would_pause {
        ctx.line(&format!(
            "  {} {} ({}, {})",
            style.bad("would pause"),
            p.execution,
            p.function,
            p.status
        ))?;
        if let Some(d) = p.report.first_divergence() {
            ctx.line(&format!("    {d}"))?;
        }
    }
    for m in &report.missing_functions {
        ctx.line(&format!(
            "  {} {} ({}): this binary does not register {}",
            style.bad("missing function"),
            m.execution,
            m.status,
            m.function
        ))?;
    }
    Ok(())
}

fn report_json(report: &DeployReport) -> Json {
    json!({
        "safe": report.is_safe(),
        "checked": report.checked,
        "clean": report.clean,
        "other_versions": report.other_versions,
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "would_resume": report.would_resume.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "would_pause": report.would_pause.iter().map(|p| json!({
            "execution": p.execution.to_string(),
            "function": p.function,
            "status": p.status.as_str(),
            "divergence": p.report.first_divergence().map(divergence_json),
        })).collect::<Vec<_>>(),
        "missing_functions": report.missing_functions.iter().map(|m| json!({
            "execution": m.execution.to_string(),
            "status": m.status.as_str(),
            "function": m.function,
        })).collect::<Vec<_>>(),
    })
}
