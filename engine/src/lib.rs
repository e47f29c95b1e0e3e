//! # stent — durable workflows for Rust
//!
//! Write workflows as ordinary `async fn`s. Every durable effect — calling
//! another durable function, sleeping, waiting for a signal — is appended to
//! an append-only journal. After a crash the engine runs the code again and
//! answers each effect from the journal, so a step whose result is stored
//! never runs again (one interrupted before that may: bodies are at least
//! once) and a week-long sleep survives restarts. One SQLite file by
//! default.
//!
//! ```no_run
//! use stent::Stent;
//!
//! #[stent::durable]
//! async fn charge(order: u64, cents: u64) -> Result<String, String> {
//!     Ok(format!("receipt-{order}-{cents}"))
//! }
//!
//! #[stent::durable]
//! async fn checkout(order: u64) -> Result<String, String> {
//!     let receipt = charge(order, 4200).await?; // journaled
//!     Stent::sleep("1s").await.map_err(|e| e.to_string())?; // durable timer
//!     Ok(receipt)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), stent::Error> {
//!     let backend = stent::backends::SqliteBackend::open("shop.db").await?;
//!     backend.init_db().await?;
//!     let executor = Stent::new(backend);
//!     let id = executor.dispatch(checkout(7)).await?;
//!
//!     let lifecycle = executor.create_worker_lifecycle(None);
//!     let worker = tokio::spawn(executor.worker().lifecycle(lifecycle.clone()).serve());
//!     let receipt = executor.wait_for::<String, String>(id, None).await?;
//!     println!("{receipt:?}");
//!     lifecycle.request_drain();
//!     worker.await.expect("worker task")?;
//!     Ok(())
//! }
//! ```
//!
//! # The guide
//!
//! The repository's `docs/` directory is the user guide, in reading order
//! in `docs/README.md`: getting started (`docs/getting-started.md`), the
//! same project on PostgreSQL step by step (`docs/guides/postgresql.md`),
//! concepts and the determinism rules, one guide per feature, the `stent`
//! command line, replay debugging, testing, patterns, the journal format and
//! the database schema. Every Rust block there is compiled as a doctest (of
//! this crate; those of replay debugging, of `stent-cli`).

mod admin;
mod call;
mod clock;
mod compensation;
mod context;
pub mod debugger;
mod error;
mod executor;
mod hub;
mod lifecycle;
mod metrics;
mod notify;
mod orchestration;
mod registry;
#[cfg(feature = "testing")]
pub mod testing;
mod waits;
mod worker;
mod workflow;

pub use call::Call;
pub use clock::{Clock, TokioClock};
pub use compensation::{Cancellation, CompensationCall, CompensationReport, RunCompensations};
pub use context::{
    ContextDefaults, Counter, ExecutionContext, ExecutionProgress, ProgressState, StateEntry,
};
pub use error::{Error, Result};
pub use executor::{Dispatch, ExecutionState, Interruption, Stent, StentBuilder};
pub use lifecycle::{LifecycleState, WorkerLifecycle};
#[cfg(feature = "metrics")]
pub use metrics::MetricsFacade;
pub use metrics::{MetricsRecorder, NoMetrics};
pub use registry::{FunctionRegistry, RetryPolicy, RetryPredicate};
pub use stent_journal::store::ExecutionStatus;
// Their earlier paths, at the root, still compile.
#[doc(hidden)]
pub use definition::*;
#[doc(hidden)]
pub use records::*;
pub use stent_journal::{
    DurationSpec, ExecutionId, Failure, IntoDuration, InvocationId, Payload, Serializer,
    format_duration, parse_duration,
};
pub use stent_macros::durable;
pub use waits::{CallTask, Wait, Waiting};
pub use worker::WorkerBuilder;
pub use workflow::{SignalTimeout, SignalWait, Sleep};

/// The journal layer: events, codec, ids, storage traits.
pub use stent_journal as journal;

/// What the inspection and administration calls return — tasks, dead
/// letters, statistics, cleanup counts, pending signals — and the filter
/// for listing tasks.
///
/// ```no_run
/// # async fn demo(executor: stent::Stent) -> stent::Result<()> {
/// use stent::records::{TaskFilter, TaskState};
///
/// let ready = executor
///     .list_tasks(TaskFilter::default().state(TaskState::Ready))
///     .await?;
/// let stats = executor.stats().await?;
/// println!("{} ready of {:?}", ready.len(), stats);
/// # Ok(()) }
/// ```
pub mod records {
    pub use crate::admin::DEFAULT_TASK_PAGE;
    pub use stent_journal::store::{
        CleanupCounts, DeadLetterRecord, QueueStats, SignalRecord, StoreStats, TaskFilter,
        TaskRecord, TaskState,
    };
}

/// The pieces `#[stent::durable]` generates code against, for a durable
/// function defined by hand (a [`definition::DurableFn`] impl)
/// or a custom [`FunctionRegistry`]: most programs never name them.
pub mod definition {
    pub use crate::call::{CallFuture, IntoDefinition};
    pub use crate::orchestration::ApplyArgs;
    pub use crate::registry::{BoxFuture, DurableFn, DurableOptions, FunctionEntry};
}

/// Notification backends: how idle workers and `wait_for` callers are
/// woken, in this process or across processes (see
/// [`StentBuilder::notification_backend`]).
pub mod notifications {
    #[cfg(feature = "postgres")]
    pub use crate::notify::PostgresNotifier;
    #[cfg(feature = "redis")]
    pub use crate::notify::RedisNotifier;
    pub use crate::notify::{
        InProcessNotifier, NoNotifications, NotificationBackend, NotificationSink,
    };
}

/// Storage backends.
pub mod backends {
    pub use stent_memory::MemoryBackend;
    #[cfg(feature = "postgres")]
    pub use stent_postgres::{LeaseClock, PostgresBackend};
    #[cfg(feature = "sqlite")]
    pub use stent_sqlite::{SqliteBackend, Synchronous};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::registry::Registration;
    pub use inventory;
}

/// The user guide under `docs/`: every Rust block of these pages is compiled
/// (and, unless marked `no_run`, run) as a doctest.
#[cfg(doctest)]
mod user_guide {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../docs/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../../docs/concepts.md")]
    pub struct Concepts;
    #[doc = include_str!("../../docs/guides/durable-functions.md")]
    pub struct DurableFunctions;
    #[doc = include_str!("../../docs/guides/orchestration.md")]
    pub struct Orchestration;
    #[doc = include_str!("../../docs/guides/errors-and-retries.md")]
    pub struct ErrorsAndRetries;
    #[doc = include_str!("../../docs/guides/signals.md")]
    pub struct Signals;
    #[doc = include_str!("../../docs/guides/timers.md")]
    pub struct Timers;
    #[doc = include_str!("../../docs/guides/workers-and-deployment.md")]
    pub struct WorkersAndDeployment;
    // Needs the `postgres` feature, which `cargo test --workspace` turns on
    // through the test crates.
    #[cfg(feature = "postgres")]
    #[doc = include_str!("../../docs/guides/postgresql.md")]
    pub struct PostgreSql;
    #[cfg(feature = "postgres")]
    #[doc = include_str!("../../docs/deployment.md")]
    pub struct Deployment;
    #[doc = include_str!("../../docs/guides/monitoring.md")]
    pub struct Monitoring;
    #[doc = include_str!("../../docs/guides/changing-code.md")]
    pub struct ChangingCode;
    #[doc = include_str!("../../docs/patterns.md")]
    pub struct Patterns;
    #[doc = include_str!("../../docs/reference/journal-format.md")]
    pub struct JournalFormat;
    #[doc = include_str!("../../docs/porting-from-python.md")]
    pub struct PortingFromPython;
    /// (Needs the `testing` feature, which `cargo test --workspace` turns
    /// on through the test crates.)
    #[cfg(feature = "testing")]
    #[doc = include_str!("../../docs/testing.md")]
    pub struct Testing;
}
