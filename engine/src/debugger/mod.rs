//! The replay debugger: re-run recorded journals against today's code.
//!
//! - [`JournalExport`] (with [`ExportExt`]) saves an execution — its record
//!   and the journal of every invocation — to a self-describing CBOR file,
//!   and loads it back.
//! - [`Replayer`] re-runs the code of a [`crate::FunctionRegistry`] against a
//!   journal (from a database or an export) and writes nothing anywhere. The
//!   [`ReplayReport`] says whether the code reproduces every recorded effect
//!   and the final result, or lists each [`Divergence`]: the seq, the
//!   recorded event, what the code asked, and field by field what changed
//!   (`args[0].items[2].qty: 3 -> 4`).
//! - A [`Stepper`] sees each durable effect before it is matched;
//!   [`StepSession`] is the terminal front end (`n`/`c`/`p`/`q`) over any
//!   reader and writer.
//! - [`DeployCheck`] replays every unfinished execution of a database
//!   against this build's code before a deploy and lists each one that
//!   would pause.
//! - [`assert_journals_replay`] keeps a folder of exported journals
//!   replaying cleanly as the code changes.
//! - [`crate::Stent::resume`] re-queues an execution paused by
//!   non-determinism once the code is fixed; [`crate::Stent::fork`] starts a
//!   new execution from a recorded prefix on today's code.
//!
//! ```no_run
//! use stent::debugger::{ExportExt, JournalExport, ReplayMode, Replayer};
//!
//! # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::debugger::DebugError> {
//! // Save the execution's journals…
//! JournalExport::from_stent(&executor, id).await?.write_to("exec.stent")?;
//! // …and later replay them against the code of this build.
//! let export = JournalExport::read_from("exec.stent")?;
//! let report = Replayer::new(stent::FunctionRegistry::global())
//!     .mode(ReplayMode::All)
//!     .replay(&export)
//!     .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod deploy;
pub(crate) mod diff;
mod error;
mod export;
mod golden;
pub(crate) mod pause;
mod repair;
mod replay;
mod step;

pub use deploy::{DeployCheck, DeployReport, MissingFunction, WouldPause};
pub use diff::{FieldDiff, describe_event, diff_values, render_value};
pub use error::DebugError;
pub use export::ExportExt;
pub use golden::{
    EXPORT_EXTENSION, assert_journals_replay, assert_journals_replay_with, check_journals,
    check_journals_with,
};
pub use replay::{
    Divergence, DivergenceReason, InvocationOutcome, InvocationReport, ReplayMode, ReplayReport,
    Replayer, replay,
};
pub use stent_journal::export::{
    EXPORT_FORMAT, EXPORT_VERSION, ExportError, InvocationJournal, JournalExport,
};
pub use stent_journal::pause::{DivergenceKind, PauseReport, PausedDivergence, SetAsideSignal};
pub use step::{Step, StepAction, StepSession, Stepper};
