//! One module per command. Each has an `Args` struct (clap derive) and an
//! `async fn run(&mut Context, Args) -> Result<(), CliError>`; adding a
//! command is a module here, a variant of [`crate::Command`] and one line in
//! the dispatch.

use serde_json::Value as Json;
use stent::{ExecutionId, InvocationId};

use crate::render::Style;
use crate::{CliError, Context};

pub mod cancel;
pub mod cleanup;
pub mod debugger;
pub mod deploy;
pub mod dlq;
pub mod journal;
pub mod list;
pub mod repair;
pub mod replay;
pub mod show;
pub mod signal;
pub mod stats;
pub mod tasks;
#[cfg(feature = "ui")]
pub mod ui;
pub mod watch;

/// Parses an execution id given on the command line.
pub fn execution_id(text: &str) -> Result<ExecutionId, CliError> {
    text.trim().parse().map_err(|e| {
        CliError::Invalid(format!(
            "{text:?} is not an execution id (a UUID like 0192f0c4-5b7a-7cc1-9a0e-3f1d2c4b5a69): {e}"
        ))
    })
}

/// Parses a task (invocation) id given on the command line.
pub fn invocation_id(text: &str) -> Result<InvocationId, CliError> {
    text.trim().parse().map_err(|e| {
        CliError::Invalid(format!(
            "{text:?} is not a task id (a UUID, as `stent tasks list` shows): {e}"
        ))
    })
}

impl Context<'_> {
    /// The output style.
    pub fn style(&self) -> Style {
        Style { color: self.color }
    }

    /// Writes `value` as pretty JSON and a newline.
    pub fn print_json(&mut self, value: &Json) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Invalid(format!("encoding JSON output: {e}")))?;
        writeln!(self.out, "{text}")?;
        Ok(())
    }

    /// Writes text as is.
    pub fn print(&mut self, text: &str) -> Result<(), CliError> {
        self.out.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Writes one line.
    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.out, "{text}")?;
        Ok(())
    }
}
