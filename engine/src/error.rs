//! The one error type of stent's public API.

use stent_journal::store::{ExecutionStatus, StoreError};
use stent_journal::{CodecError, DurationError, ExecutionId, InvocationId};

/// Everything that can go wrong when using stent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The function is not registered with this executor.
    #[error(
        "function {function_name:?} is not registered; registered functions: {}. Mark it with #[stent::durable] (or register it on the custom FunctionRegistry you gave the builder)",
        if registered.is_empty() { "none".to_string() } else { registered.join(", ") }
    )]
    UnregisteredFunction {
        /// The name looked up.
        function_name: String,
        /// The names that are registered.
        registered: Vec<String>,
    },
    /// A caller's wait ran out of time (`wait_for` with a timeout, the
    /// seed's `ExpiryError`). Only the wait ended: the execution goes on.
    /// An execution whose own deadline passed ends as [`Error::TimedOut`].
    #[error("timed out after {waited:?} waiting for {what}")]
    Expiry {
        /// What was awaited.
        what: String,
        /// How long.
        waited: std::time::Duration,
    },
    /// No such execution.
    #[error("execution {0} not found")]
    NotFound(ExecutionId),
    /// No dead letter for this task (it was never dead-lettered, or was
    /// replayed or discarded already).
    #[error("no dead letter for task {0} (never dead-lettered, or replayed or discarded already)")]
    DeadLetterNotFound(InvocationId),
    /// The execution has not finished yet.
    #[error("execution {id} has not finished yet (state: {state})")]
    StillRunning {
        /// The execution.
        id: ExecutionId,
        /// Its current state.
        state: ExecutionStatus,
    },
    /// The execution failed without a typed error (a panic, or the engine
    /// could not go on).
    #[error("execution {id} failed: {message}")]
    ExecutionFailed {
        /// The execution.
        id: ExecutionId,
        /// What happened.
        message: String,
    },
    /// The execution has ended (completed, failed, cancelled or timed out),
    /// so what was asked of it — a signal — could never take effect;
    /// nothing was stored.
    #[error(
        "execution {id} has already ended ({state}): a signal sent to it would never be delivered, so it was refused"
    )]
    Ended {
        /// The execution.
        id: ExecutionId,
        /// How it ended.
        state: ExecutionStatus,
    },
    /// The execution was cancelled.
    #[error("execution {0} was cancelled")]
    Cancelled(ExecutionId),
    /// The execution ran past its own deadline (`.expiry()` or
    /// `.max_duration()` at dispatch) and ended as `timed_out`. A caller's
    /// wait that runs out of time is [`Error::Expiry`].
    #[error("execution {0} timed out")]
    TimedOut(ExecutionId),
    /// The execution is paused because its code no longer matches its journal.
    #[error("execution {id} is paused: {report}")]
    NonDeterminism {
        /// The execution.
        id: ExecutionId,
        /// The divergence report.
        report: String,
    },
    /// A dispatch named an execution that already exists for another call
    /// (another function, or other arguments). The same call dispatched
    /// again under the same id or key is not an error: it returns the
    /// existing execution.
    #[error(
        "execution {id} already exists as a call of {existing}; this dispatch of {asked} with the same id or key would be another call (a dispatch key names one call)"
    )]
    DispatchConflict {
        /// The execution.
        id: ExecutionId,
        /// What the existing execution runs.
        existing: String,
        /// What the dispatch asked for (the function, with other arguments
        /// if the function is the same).
        asked: String,
    },
    /// A duration was malformed.
    #[error(transparent)]
    InvalidDuration(#[from] DurationError),
    /// Options of a builder or a dispatch that cannot be combined, or an
    /// option with an invalid value (a heartbeat not shorter than the lease,
    /// `expiry` and `max_duration` both given, a malformed Redis URL).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An argument of a call was malformed or out of range (a signal key, a
    /// cancellation reason, a patch id, a number that is not finite, a fork
    /// point); nothing was done.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The call does not fit the state of what it was made on (resuming an
    /// execution that is not paused, polling a future that already
    /// finished); nothing was done.
    #[error("{0}")]
    InvalidState(String),
    /// A recorded journal does not fit the code that reads it: an effect was
    /// answered by a record of another kind. The engine stops the
    /// invocation rather than go on with a wrong value.
    #[error("journal mismatch: {0}")]
    JournalMismatch(String),
    /// Encoding or decoding a value failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The storage backend failed.
    #[error(transparent)]
    Backend(#[from] StoreError),
    /// A durable effect was used outside a running execution.
    #[error(transparent)]
    NoContext(#[from] stent_replay::NoContext),
}

/// Result alias for stent's API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
