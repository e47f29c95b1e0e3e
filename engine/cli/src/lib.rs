//! The `stent` command line, as a library you can embed.
//!
//! The `stent` binary this crate builds reads any stent database (a SQLite
//! file or PostgreSQL) and lets a person look inside it: executions, their
//! journals as timelines, tasks, queue and dead-letter counts, a live view;
//! and act on it: send a signal, cancel, replay or discard dead letters,
//! clean up old executions. Every command speaks `--json` too.
//!
//! Commands that re-run recorded journals against code (`replay`, `fork`)
//! need the user's durable functions, which the plain binary does not have
//! (`resume` only re-queues, so every binary runs it). Build your own binary with your functions registered and hand the
//! registry to [`run`]:
//!
//! ```no_run
//! #[stent::durable]
//! async fn greet(name: String) -> Result<String, String> {
//!     Ok(format!("hello {name}"))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut registry = stent::FunctionRegistry::new();
//!     registry.register(greet);
//!     stent_cli::run(Some(registry))
//! }
//! ```
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | not found, invalid input, or the database failed ([`exit::FAILURE`]) |
//! | 2 | usage: bad flags or arguments, or a command this binary does not have ([`exit::USAGE`]) |
//! | 3 | `replay`: the journal does not replay against this code; `deploy-check`: an execution would pause on it ([`exit::DIVERGED`]) |

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use stent::{FunctionRegistry, Stent};

pub mod commands;
mod db;
mod error;
pub mod render;
#[cfg(feature = "ui")]
pub mod ui;

pub use error::CliError;

/// Process exit codes of the `stent` command line.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Not found, invalid input, or a database failure.
    pub const FAILURE: u8 = 1;
    /// Usage: bad flags or arguments (clap's), or a command this binary
    /// cannot run (the replay debugger in the plain `stent` binary).
    pub const USAGE: u8 = 2;
    /// `replay`: the recorded journal does not replay against this code.
    pub const DIVERGED: u8 = 3;
}

/// The command line: global flags and one command.
#[derive(Debug, Parser)]
#[command(
    name = "stent",
    version,
    about = "Inspect and operate stent durable workflows (SQLite or PostgreSQL)",
    propagate_version = true
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The database: a SQLite file path or a postgres:// URL. Never created:
    /// a path that does not exist is an error.
    #[arg(
        long,
        global = true,
        env = "STENT_DB",
        default_value = "stent.db",
        value_name = "PATH|URL"
    )]
    pub db: String,
    /// PostgreSQL only: the schema holding stent's tables (default: the
    /// connection's search_path).
    #[arg(long, global = true, env = "STENT_PG_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No colors (also off when standard output is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List executions, newest first.
    List(commands::list::ListArgs),
    /// Show one execution: state, routing, timing, counters, custom state,
    /// progress, result or error.
    Show(commands::show::ShowArgs),
    /// Print an execution's journal as a timeline (or JSON, or export it).
    Journal(commands::journal::JournalArgs),
    /// Tasks: the rows of the work queue.
    #[command(subcommand)]
    Tasks(commands::tasks::TasksCommand),
    /// Counts per state, queue depths, dead letters, running work.
    Stats(commands::stats::StatsArgs),
    /// Dead letters: invocations suspended after running out of attempts.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Send a signal to an execution.
    Signal(commands::signal::SignalArgs),
    /// Cancel an execution.
    Cancel(commands::cancel::CancelArgs),
    /// Delete executions that ended long ago (with their journals).
    Cleanup(commands::cleanup::CleanupArgs),
    /// A live view: active executions, throughput, queues, dead letters.
    Watch(commands::watch::WatchArgs),
    /// Re-run a recorded journal against your code (needs a binary built
    /// with `stent_cli::run(registry)`).
    Replay(commands::replay::ReplayArgs),
    /// Replay every unfinished execution against your code and list those
    /// that would pause on it, before you deploy it (needs a binary built
    /// with `stent_cli::run(registry)`; exit code 3 when any would).
    DeployCheck(commands::deploy::DeployCheckArgs),
    /// Re-queue a paused execution: a worker replays it on the code it runs.
    Resume(commands::repair::ResumeArgs),
    /// Start a new execution from a recorded prefix of another (needs a
    /// binary built with `stent_cli::run(registry)`).
    Fork(commands::repair::ForkArgs),
    /// Serve the web console: executions, what they wait for, journals as
    /// timelines, and (unless --read-only) signal, cancel and resume.
    #[cfg(feature = "ui")]
    Ui(commands::ui::UiArgs),
}

impl Command {
    /// True if the command may change the database (it is refused on a
    /// database a newer stent wrote).
    pub fn writes(&self) -> bool {
        use commands::dlq::DlqCommand;
        match self {
            Command::Signal(_) | Command::Cancel(_) | Command::Resume(_) | Command::Fork(_) => true,
            Command::Cleanup(args) => !args.dry_run,
            #[cfg(feature = "ui")]
            Command::Ui(args) => !args.read_only,
            Command::Dlq(cmd) => !matches!(cmd, DlqCommand::List(_) | DlqCommand::Show(_)),
            Command::List(_)
            | Command::Show(_)
            | Command::Journal(_)
            | Command::Tasks(_)
            | Command::Stats(_)
            | Command::Watch(_)
            | Command::Replay(_)
            | Command::DeployCheck(_) => false,
        }
    }
}

/// What a command runs with: the executor over the chosen database, the
/// output, and the output style.
pub struct Context<'a> {
    /// The executor (its registry is the one given to [`run`], if any).
    pub stent: Stent,
    /// The registry given to [`run`], if any.
    pub registry: Option<FunctionRegistry>,
    /// `--json`.
    pub json: bool,
    /// Colors on.
    pub color: bool,
    /// Standard output is a terminal (the live view redraws in place).
    pub terminal: bool,
    /// Where output goes.
    pub out: &'a mut (dyn Write + Send),
}

/// Parses the process arguments and runs the command; returns the exit code
/// to end the process with. `registry` holds the user's durable functions
/// (`None` for the plain binary, which then cannot replay).
pub fn run(registry: Option<FunctionRegistry>) -> ExitCode {
    ExitCode::from(run_from(std::env::args_os(), registry))
}

/// As [`run`], with explicit arguments (the first is the program name);
/// returns the exit code.
pub fn run_from<I, T>(args: I, registry: Option<FunctionRegistry>) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(exit::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    runtime.block_on(execute(cli, registry, &mut stdout))
}

/// Runs a parsed command line, writing to `out`; returns the exit code.
/// Errors are printed on standard error.
pub async fn execute(
    cli: Cli,
    registry: Option<FunctionRegistry>,
    out: &mut (dyn Write + Send),
) -> u8 {
    let json = cli.global.json;
    match dispatch(cli, registry, out).await {
        Ok(()) => exit::OK,
        // The reader went away (`stent --json list | head -2`): nothing
        // more to say, and nothing went wrong.
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) if json => {
            let mut error = serde_json::json!({"error": e.to_string(), "kind": e.kind()});
            if let Some(db) = e.database() {
                error["database"] = serde_json::json!({
                    "kind": db.kind().as_str(),
                    "code": db.code(),
                });
            }
            eprintln!("{error}");
            e.exit_code()
        }
        Err(e) => {
            eprintln!("error: {}", render::escape_controls(&e.to_string()));
            e.exit_code()
        }
    }
}

async fn dispatch(
    cli: Cli,
    registry: Option<FunctionRegistry>,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    // Commands that need the user's code answer before touching the database.
    match &cli.command {
        Command::Replay(_) if registry.is_none() => {
            return commands::debugger::unavailable("replay", &registry);
        }
        Command::Fork(_) if registry.is_none() => {
            return commands::debugger::unavailable("fork", &registry);
        }
        Command::DeployCheck(_) if registry.is_none() => {
            return commands::debugger::unavailable("deploy-check", &registry);
        }
        _ => {}
    }
    let terminal = std::io::stdout().is_terminal();
    let stent = match (&cli.command, &registry) {
        // `replay --file` reads an export: no database.
        (Command::Replay(args), Some(registry)) if args.offline() => {
            Stent::builder(stent::backends::MemoryBackend::new())
                .function_registry(registry.clone())
                .build()
        }
        _ => db::open(&cli.global, registry.clone(), cli.command.writes()).await?,
    };
    let mut ctx = Context {
        stent,
        registry,
        json: cli.global.json,
        color: terminal && !cli.global.no_color && std::env::var_os("NO_COLOR").is_none(),
        terminal,
        out,
    };
    use commands::*;
    let outcome = match cli.command {
        Command::List(args) => list::run(&mut ctx, args).await,
        Command::Show(args) => show::run(&mut ctx, args).await,
        Command::Journal(args) => journal::run(&mut ctx, args).await,
        Command::Tasks(cmd) => tasks::run(&mut ctx, cmd).await,
        Command::Stats(args) => stats::run(&mut ctx, args).await,
        Command::Dlq(cmd) => dlq::run(&mut ctx, cmd).await,
        Command::Signal(args) => signal::run(&mut ctx, args).await,
        Command::Cancel(args) => cancel::run(&mut ctx, args).await,
        Command::Cleanup(args) => cleanup::run(&mut ctx, args).await,
        Command::Watch(args) => watch::run(&mut ctx, args).await,
        Command::Replay(args) => replay::run(&mut ctx, args).await,
        Command::DeployCheck(args) => deploy::run(&mut ctx, args).await,
        Command::Resume(args) => repair::resume(&mut ctx, args).await,
        Command::Fork(args) => repair::fork(&mut ctx, args).await,
        #[cfg(feature = "ui")]
        Command::Ui(args) => ui::run(&mut ctx, args).await,
    };
    // What the command published (a signal, a cancellation) reaches the
    // notifier before the process exits.
    ctx.stent.flush_notifications().await;
    outcome
}

/// docs/replay-debugging.md and docs/ui.md, whose Rust blocks use both
/// `stent` and this crate: compiled here as doctests.
#[cfg(doctest)]
mod user_guide {
    #[doc = include_str!("../../../docs/replay-debugging.md")]
    pub struct ReplayDebugging;

    #[cfg(feature = "ui")]
    #[doc = include_str!("../../../docs/ui.md")]
    pub struct Console;
}
