//! What can go wrong in a command, and the exit code each failure maps to.

use std::fmt;

use crate::exit;

/// A command's failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// The execution, task, dead letter or database does not exist.
    NotFound(String),
    /// An argument is well-formed for the parser but not acceptable (an
    /// unknown state name, a payload that is not JSON, ...).
    Invalid(String),
    /// The command exists but this binary cannot run it.
    Unavailable(String),
    /// The engine or the database failed.
    Stent(stent::Error),
    /// Writing the output failed.
    Io(std::io::Error),
    /// `replay`: the journal does not replay against this code.
    Diverged(String),
}

impl CliError {
    /// A short name of the kind of failure, for `--json` errors:
    /// `not_found`, `invalid`, `unavailable`, `failed`, `output`,
    /// `diverged`.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::NotFound(_) => "not_found",
            CliError::Invalid(_) => "invalid",
            CliError::Unavailable(_) => "unavailable",
            CliError::Stent(_) => "failed",
            CliError::Io(_) => "output",
            CliError::Diverged(_) => "diverged",
        }
    }

    /// The database's failure behind this one, if it is one: its kind
    /// (`unavailable`, `contention`, `full`, `other`) and code tell an
    /// operator or a script whether to try again.
    pub fn database(&self) -> Option<&stent::journal::store::DatabaseError> {
        match self {
            CliError::Stent(stent::Error::Backend(
                stent::journal::store::StoreError::Database(db),
            )) => Some(db),
            _ => None,
        }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unavailable(_) => exit::USAGE,
            CliError::Diverged(_) => exit::DIVERGED,
            _ => exit::FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NotFound(m)
            | CliError::Invalid(m)
            | CliError::Unavailable(m)
            | CliError::Diverged(m) => f.write_str(m),
            CliError::Stent(e) => write!(f, "{e}"),
            CliError::Io(e) => write!(f, "writing output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<stent::Error> for CliError {
    fn from(e: stent::Error) -> Self {
        match e {
            stent::Error::NotFound(id) => CliError::NotFound(format!("execution {id} not found")),
            stent::Error::Backend(stent::journal::store::StoreError::NotFound(what)) => {
                CliError::NotFound(format!("{what} not found"))
            }
            stent::Error::InvalidArgument(m) | stent::Error::InvalidState(m) => {
                CliError::Invalid(m)
            }
            other => CliError::Stent(other),
        }
    }
}

impl From<stent::journal::store::StoreError> for CliError {
    fn from(e: stent::journal::store::StoreError) -> Self {
        CliError::from(stent::Error::from(e))
    }
}

impl From<stent::journal::CodecError> for CliError {
    fn from(e: stent::journal::CodecError) -> Self {
        CliError::Stent(stent::Error::from(e))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Io(e)
    }
}
