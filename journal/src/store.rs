//! The storage traits every backend implements, split by capability.
//!
//! Backends store bytes and metadata; they never interpret user values and
//! never read a clock (every call that needs "now" is handed it). All writes a
//! worker makes go through [`TaskStore::commit`], which applies a batch of
//! [`TurnCommit`]s in one transaction and fences each by its lease epoch.

use std::fmt;

use async_trait::async_trait;
use thiserror::Error;

use crate::codec::CallKey;
use crate::event::EventKind;
use crate::ids::{ExecutionId, InvocationId, LeaseEpoch, Seq, WorkerId};
use crate::time::Timestamp;

mod database;

pub use database::{DatabaseError, DatabaseErrorKind};

/// The queue a task lands in when none is given.
pub const DEFAULT_QUEUE: &str = "default";

/// A storage failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The worker's lease on the invocation was taken over or released; the
    /// write was refused (fencing).
    #[error(
        "lease on invocation {invocation} at epoch {epoch} is no longer held; the write was refused"
    )]
    LeaseLost {
        /// The invocation.
        invocation: InvocationId,
        /// The epoch the writer held.
        epoch: LeaseEpoch,
    },
    /// A uniqueness rule was violated (an event at an existing seq, a signal
    /// consumed twice, an id reused).
    #[error("conflicting write: {0}")]
    Conflict(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The execution has ended (completed, failed, cancelled or timed out):
    /// what was asked of it (a signal) could never take effect, so nothing
    /// was stored.
    #[error("execution {execution} has already ended ({status}); nothing was stored")]
    ExecutionEnded {
        /// The execution.
        execution: ExecutionId,
        /// How it ended.
        status: ExecutionStatus,
    },
    /// Stored data is not what this build expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed or could not be reached; its kind, code and
    /// source are kept ([`DatabaseError`]).
    #[error("database error: {0}")]
    Database(DatabaseError),
    /// The database holds no stent tables: `init_db` never ran on it, or
    /// another database or schema was meant.
    #[error("{0} holds no stent tables (they are created by the backend's init_db())")]
    SchemaMissing(String),
    /// The request cannot be answered as asked (a malformed filter); the
    /// message says why.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The database was created or upgraded by a newer stent than this
    /// build; nothing was written to it.
    #[error(
        "this database was created by a newer stent (schema version {found}, this build knows up to {known}); upgrade stent to use it. Nothing was written"
    )]
    SchemaTooNew {
        /// The newest schema version the database records.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
}

impl StoreError {
    /// The [`StoreError::Conflict`] of a signal key of `execution` used
    /// before for another signal (by name or payload).
    pub fn signal_key_conflict(execution: ExecutionId, key: &str) -> StoreError {
        StoreError::Conflict(format!(
            "signal key {key:?} of execution {execution} was used for another signal (another \
             name or payload); nothing was stored"
        ))
    }

    /// A [`StoreError::Database`] described by `message`, of kind
    /// [`DatabaseErrorKind::Other`].
    pub fn database(message: impl Into<String>) -> StoreError {
        StoreError::Database(DatabaseError::new(message))
    }

    /// A [`StoreError::Database`] of kind [`DatabaseErrorKind::Unavailable`]
    /// (the database could not be reached, or the connection was lost)
    /// described by `message`.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Database(DatabaseError::new(message).with_kind(DatabaseErrorKind::Unavailable))
    }

    /// True if the same call may succeed later without anyone changing
    /// anything (the database came back, a race was lost, room was freed):
    /// a transient [`StoreError::Database`].
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(db) if db.kind().is_transient())
    }
}

/// Result alias of the storage traits.
pub type StoreResult<T> = Result<T, StoreError>;

/// Lifecycle state of an execution, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutionStatus {
    /// Dispatched, not yet claimed.
    Pending,
    /// Claimed at least once and not finished.
    Running,
    /// Root returned `Ok`.
    Completed,
    /// Root failed.
    Failed,
    /// Ran past its deadline.
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// Stopped by a non-determinism report; resumes on request.
    Paused,
}

impl ExecutionStatus {
    /// Every status.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Cancelled,
        ExecutionStatus::Paused,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::TimedOut => "timed_out",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Paused => "paused",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// True once nothing more will happen to the execution.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::TimedOut
                | ExecutionStatus::Cancelled
        )
    }

    /// The kind of event that ends a root journal in this status (`None`
    /// for a status that is not terminal).
    pub const fn terminal_kind(self) -> Option<EventKind> {
        match self {
            ExecutionStatus::Completed => Some(EventKind::Completed),
            ExecutionStatus::Failed => Some(EventKind::Failed),
            ExecutionStatus::TimedOut => Some(EventKind::TimedOut),
            ExecutionStatus::Cancelled => Some(EventKind::Cancelled),
            _ => None,
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task may run: queue, priority and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Queue name.
    pub queue: String,
    /// Higher runs first.
    pub priority: i32,
    /// Tags for worker filtering.
    pub tags: Vec<String>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_string(),
            priority: 0,
            tags: Vec::new(),
        }
    }
}

/// A lease granted at creation time, so the creating worker can run the new
/// invocation at once without a separate claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The worker that holds it.
    pub worker: WorkerId,
    /// When it runs out unless renewed.
    pub until: Timestamp,
}

/// A new invocation and its task. Its journal starts with `started_event` at seq 0.
#[derive(Debug, Clone)]
pub struct NewInvocation {
    /// Its id.
    pub invocation: InvocationId,
    /// The execution it belongs to.
    pub execution: ExecutionId,
    /// Registered function name.
    pub function: String,
    /// Routing of its task.
    pub routing: Routing,
    /// Earliest time its task may be claimed.
    pub run_at: Timestamp,
    /// Encoded `Started` event.
    pub started_event: Vec<u8>,
    /// Claim it for this worker right away (epoch 1).
    pub lease: Option<LeaseGrant>,
}

/// A new execution: its metadata and its root invocation.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Execution id; also the root invocation's id.
    pub id: ExecutionId,
    /// Root function.
    pub function: String,
    /// When it was dispatched.
    pub created_at: Timestamp,
    /// When it times out, if ever.
    pub deadline: Option<Timestamp>,
    /// The code version it runs on (`None`: the first worker with a code
    /// version to claim it pins it to its own).
    pub code_version: Option<String>,
    /// The root invocation.
    pub root: NewInvocation,
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Its seq.
    pub seq: Seq,
    /// Its kind (stored in its own column).
    pub kind: EventKind,
    /// Its call key, if any (stored in its own column).
    pub call_key: Option<CallKey>,
    /// The encoded event.
    pub bytes: Vec<u8>,
}

/// A stored journal row, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    /// Seq.
    pub seq: Seq,
    /// Stored kind name.
    pub kind: String,
    /// Encoded event.
    pub bytes: Vec<u8>,
    /// When it was appended.
    pub recorded_at: Timestamp,
}

/// The result of a finished child, to be appended to its parent's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The parent invocation.
    pub parent: InvocationId,
    /// The encoded resolution event (`CallCompleted` / `CallFailed`).
    pub event: Vec<u8>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionOutcome {
    /// Terminal status.
    pub status: ExecutionStatus,
    /// The root's encoded terminal event.
    pub terminal_event: Vec<u8>,
}

/// What happens to the task after a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDisposition {
    /// Keep the lease and extend it.
    Hold {
        /// New lease expiry.
        lease_until: Timestamp,
    },
    /// Release the lease. The task runs again at `run_at`, or when woken (a
    /// delivery or a signal) if that comes first. If it was woken during the
    /// turn it is runnable at once.
    Park {
        /// Earliest pending timer, if any.
        run_at: Option<Timestamp>,
    },
    /// The invocation finished.
    Finish {
        /// The result for the parent, for a nested invocation.
        deliver: Option<Delivery>,
        /// The execution's outcome, for a root invocation.
        execution: Option<ExecutionOutcome>,
    },
    /// Non-determinism: stop, keep the report, wait for a human.
    Pause {
        /// The divergence report.
        report: String,
    },
    /// The attempt failed and will be retried: release the lease, make the
    /// task runnable at `run_at`, count a retry (`retries += 1`), and keep
    /// `error` with the time as the task's last failure, for operators.
    Retry {
        /// When to try again.
        run_at: Timestamp,
        /// Why the attempt failed, in words.
        error: String,
    },
    /// Out of attempts with no result to deliver: suspend the task (state
    /// `dead`, not claimable) and record a dead letter until a person replays
    /// or discards it.
    DeadLetter {
        /// Why, for the person reading the dead letter.
        reason: String,
    },
}

/// Everything one turn of one invocation writes. Applied atomically; refused
/// as a whole with [`StoreError::LeaseLost`] if the epoch is stale.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    /// The invocation written to.
    pub invocation: InvocationId,
    /// The lease epoch the writer holds.
    pub epoch: LeaseEpoch,
    /// Current time (for `recorded_at` and wake-ups).
    pub now: Timestamp,
    /// Events appended to the invocation's journal.
    pub events: Vec<NewEvent>,
    /// Child invocations created.
    pub spawn: Vec<NewInvocation>,
    /// Inbox items now appended to the journal.
    pub consumed_inbox: Vec<InboxId>,
    /// Signals now consumed by this invocation.
    pub consumed_signals: Vec<SignalId>,
    /// Results to store in the cache: `(call key, encoded value)`. An
    /// existing entry is kept (first writer wins).
    pub cache_put: Vec<(CallKey, Vec<u8>)>,
    /// Idempotency keys this invocation owns that now have a result:
    /// `(key, encoded value)`; marks them done.
    pub idempotency_done: Vec<(String, Vec<u8>)>,
    /// Idempotency keys this invocation owns whose run failed: released, so
    /// a later call runs the body again.
    pub idempotency_released: Vec<String>,
    /// What happens to the task.
    pub disposition: TaskDisposition,
}

impl TurnCommit {
    /// A turn of `invocation` under the lease at `epoch` that writes
    /// nothing but `disposition` (fill in what else it writes with struct
    /// update syntax).
    pub fn bare(
        invocation: InvocationId,
        epoch: LeaseEpoch,
        now: Timestamp,
        disposition: TaskDisposition,
    ) -> TurnCommit {
        TurnCommit {
            invocation,
            epoch,
            now,
            events: Vec::new(),
            spawn: Vec::new(),
            consumed_inbox: Vec::new(),
            consumed_signals: Vec::new(),
            cache_put: Vec::new(),
            idempotency_done: Vec::new(),
            idempotency_released: Vec::new(),
            disposition,
        }
    }

    /// True if the turn writes nothing keyed outside its execution's tasks
    /// and journals (no signal consumed, no cache entry, no idempotency key)
    /// and its disposition holds, parks or finishes its task (not a retry, a
    /// pause or a dead letter): every effect of its [`plan`](Self::plan) is
    /// [plain](crate::plan::Effect::is_plain). Backends apply such turns on
    /// their fast paths.
    ///
    /// ```
    /// # use stent_journal::store::{TaskDisposition, TurnCommit};
    /// # use stent_journal::{ExecutionId, LeaseEpoch, Timestamp};
    /// let inv = ExecutionId::new_random().root_invocation();
    /// let park = TaskDisposition::Park { run_at: None };
    /// let turn = TurnCommit::bare(inv, LeaseEpoch(1), Timestamp(0), park);
    /// assert!(turn.is_plain());
    /// let keyed = TurnCommit { idempotency_released: vec!["k".into()], ..turn };
    /// assert!(!keyed.is_plain());
    /// ```
    pub fn is_plain(&self) -> bool {
        self.plan().all(|effect| effect.is_plain())
    }

    /// Folds `later`, a following turn of the same invocation under the same
    /// lease, into this one, so both are stored as one turn: events, spawns
    /// and consumptions are appended and `later`'s disposition replaces this
    /// one's. Only a turn that just holds the lease can take a later one
    /// (any other disposition releases it); otherwise `later` is given back.
    ///
    /// ```
    /// # use stent_journal::store::{TaskDisposition, TurnCommit};
    /// # use stent_journal::{ExecutionId, LeaseEpoch, Timestamp};
    /// let invocation = ExecutionId::new_random().root_invocation();
    /// let turn = |disposition| TurnCommit::bare(invocation, LeaseEpoch(1), Timestamp(10), disposition);
    /// let mut first = turn(TaskDisposition::Hold { lease_until: Timestamp(99) });
    /// first.absorb(turn(TaskDisposition::Park { run_at: None })).unwrap();
    /// assert!(matches!(first.disposition, TaskDisposition::Park { .. }));
    /// ```
    pub fn absorb(&mut self, later: TurnCommit) -> Result<(), Box<TurnCommit>> {
        if later.invocation != self.invocation
            || later.epoch != self.epoch
            || !matches!(self.disposition, TaskDisposition::Hold { .. })
        {
            return Err(Box::new(later));
        }
        self.now = later.now;
        self.events.extend(later.events);
        self.spawn.extend(later.spawn);
        self.consumed_inbox.extend(later.consumed_inbox);
        self.consumed_signals.extend(later.consumed_signals);
        self.cache_put.extend(later.cache_put);
        self.idempotency_done.extend(later.idempotency_done);
        self.idempotency_released.extend(later.idempotency_released);
        self.disposition = later.disposition;
        Ok(())
    }
}

/// Id of an inbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboxId(pub i64);

/// Id of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalId(pub i64);

/// A result delivered to an invocation, not yet in its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// Its id.
    pub id: InboxId,
    /// The encoded resolution event.
    pub event: Vec<u8>,
}

/// A signal not yet consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRecord {
    /// Its id (signals of one name are consumed in id order).
    pub id: SignalId,
    /// Name.
    pub name: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
}

impl SignalRecord {
    /// The answer to a signal sent again under `key` of `execution`, this
    /// being the one stored under that key: its id if it is the same
    /// signal (`name`, `payload`), [`StoreError::signal_key_conflict`]
    /// otherwise.
    pub fn resent(
        &self,
        execution: ExecutionId,
        key: &str,
        name: &str,
        payload: &[u8],
    ) -> StoreResult<SignalId> {
        match self.name == name && self.payload == payload {
            true => Ok(self.id),
            false => Err(StoreError::signal_key_conflict(execution, key)),
        }
    }
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Claiming worker.
    pub worker: WorkerId,
    /// Current time.
    pub now: Timestamp,
    /// Lease expiry of the claimed tasks.
    pub lease_until: Timestamp,
    /// Most tasks to claim.
    pub limit: usize,
    /// Only these queues (`None`: any).
    pub queues: Option<Vec<String>>,
    /// Only tasks carrying at least one of these tags (`None`: any).
    pub tags: Option<Vec<String>>,
    /// Only these functions (the ones the worker has registered).
    pub functions: Vec<String>,
    /// Cluster-wide limits: a task of `function` is claimed only while fewer
    /// than `limit` tasks of it hold an unexpired lease (leases whose
    /// `lease_until` has passed do not count), claims of this batch included.
    pub concurrency_limits: Vec<(String, u32)>,
    /// The claiming worker's code version. With one, only tasks of
    /// executions of this version, of one of [`also_runs`](Self::also_runs),
    /// or of none yet are claimed, and an execution of none yet is pinned
    /// to this version by the claim. `None`: every execution, none pinned.
    pub code_version: Option<String>,
    /// Other code versions the worker runs (only with a `code_version`).
    pub also_runs: Vec<String>,
}

impl ClaimRequest {
    /// The code versions whose executions this claim may take, `None` when
    /// it takes every execution (no [`code_version`](Self::code_version)).
    pub fn versions(&self) -> Option<Vec<String>> {
        let own = self.code_version.as_ref()?;
        let mut all = vec![own.clone()];
        all.extend(self.also_runs.iter().cloned());
        all.sort();
        all.dedup();
        Some(all)
    }

    /// Whether an execution of `version` may be claimed.
    pub fn runs(&self, version: Option<&str>) -> bool {
        match (&self.code_version, version) {
            (None, _) | (Some(_), None) => true,
            (Some(own), Some(v)) => own == v || self.also_runs.iter().any(|a| a == v),
        }
    }
}

/// A task now leased to the claiming worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTask {
    /// The invocation to run or resume.
    pub invocation: InvocationId,
    /// Its execution.
    pub execution: ExecutionId,
    /// Its function.
    pub function: String,
    /// The lease epoch to write with.
    pub epoch: LeaseEpoch,
    /// Claims since the lease holder last committed, this claim included. A
    /// task that keeps killing its worker counts up here; any commit by the
    /// lease holder resets it to 0, and a takeover the previous holder
    /// reports as no crash ([`TaskStore::forgive_takeover`]) is taken off.
    pub attempts: u32,
    /// Times the task was parked for a retry ([`TaskDisposition::Retry`]).
    pub retries: u32,
    /// The execution's deadline, if any.
    pub deadline: Option<Timestamp>,
}

/// A stored execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// Id.
    pub id: ExecutionId,
    /// Root function.
    pub function: String,
    /// Status.
    pub status: ExecutionStatus,
    /// Routing of the root task.
    pub routing: Routing,
    /// Dispatch time.
    pub created_at: Timestamp,
    /// First claim.
    pub started_at: Option<Timestamp>,
    /// End.
    pub completed_at: Option<Timestamp>,
    /// Deadline, if any.
    pub deadline: Option<Timestamp>,
    /// The root's encoded terminal event, once finished.
    pub terminal_event: Option<Vec<u8>>,
    /// Why it is paused, as stored (see [`ExecutionRecord::pause`]).
    pub pause_report: Option<String>,
    /// Retries so far, summed over the execution's tasks.
    pub retries: u32,
    /// The code version it runs on (`None`: not pinned yet).
    pub code_version: Option<String>,
}

impl ExecutionRecord {
    /// Why it is paused, read from [`pause_report`](Self::pause_report):
    /// structured when a worker paused it, only a text otherwise.
    pub fn pause(&self) -> Option<crate::PauseReport> {
        self.pause_report
            .as_deref()
            .map(crate::PauseReport::from_stored)
    }
}

/// Filter and page for listing executions, newest first. Every filter
/// that is set must hold.
///
/// Built with [`Default`] and the setters (the struct is
/// `#[non_exhaustive]`, so filters can be added without breaking callers);
/// each filter setter takes a value or an `Option` (`None` clears it).
///
/// ```
/// use stent_journal::store::{ExecutionFilter, ExecutionStatus};
/// let failed_mail = ExecutionFilter::default()
///     .status(ExecutionStatus::Failed)
///     .queue("mail".to_string())
///     .limit(50);
/// assert_eq!(failed_mail.queue.as_deref(), Some("mail"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
    /// Only executions of this (root) function.
    pub function: Option<String>,
    /// Only executions in this queue.
    pub queue: Option<String>,
    /// Only executions with this tag.
    pub tag: Option<String>,
    /// Only executions dispatched at or after this time.
    pub created_after: Option<Timestamp>,
    /// Only executions dispatched before this time.
    pub created_before: Option<Timestamp>,
    /// Only executions whose id starts with these hex digits (hyphens are
    /// ignored; see [`ExecutionFilter::id_range`]).
    pub id_prefix: Option<String>,
}

/// Setters of a filter's fields, `Option`s taken as `impl Into<Option<T>>`.
macro_rules! setters {
    ($ty:ident { $($field:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                pub fn $field(mut self, value: impl Into<$t>) -> Self {
                    self.$field = value.into();
                    self
                }
            )*

            /// Sets the page size.
            pub fn limit(mut self, limit: usize) -> Self {
                self.limit = limit;
                self
            }

            /// Sets the rows to skip.
            pub fn offset(mut self, offset: usize) -> Self {
                self.offset = offset;
                self
            }
        }
    };
}

setters!(ExecutionFilter {
    status: Option<ExecutionStatus>,
    function: Option<String>,
    queue: Option<String>,
    tag: Option<String>,
    created_after: Option<Timestamp>,
    created_before: Option<Timestamp>,
    id_prefix: Option<String>,
});

setters!(TaskFilter {
    execution: Option<ExecutionId>,
    state: Option<TaskState>,
    queue: Option<String>,
});

impl ExecutionFilter {
    /// The ids an [`id_prefix`](Self::id_prefix) covers, as the lowest and
    /// highest (both included): the prefix padded with `0` and with `f`.
    /// `None` without a prefix; an error naming the problem if it is not
    /// at most 32 hex digits.
    ///
    /// ```
    /// use stent_journal::store::ExecutionFilter;
    /// let f = ExecutionFilter::default().id_prefix("3F2A-1".to_string());
    /// let (lo, hi) = f.id_range().unwrap().unwrap();
    /// assert_eq!(lo.to_string(), "3f2a1000-0000-0000-0000-000000000000");
    /// assert_eq!(hi.to_string(), "3f2a1fff-ffff-ffff-ffff-ffffffffffff");
    /// ```
    pub fn id_range(&self) -> Result<Option<(uuid::Uuid, uuid::Uuid)>, String> {
        let Some(prefix) = &self.id_prefix else {
            return Ok(None);
        };
        let digits: String = prefix
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{prefix:?} is not the start of an execution id (at most 32 hex digits)"
            ));
        }
        let pad = |with: char| {
            let mut text = digits.clone();
            while text.len() < 32 {
                text.push(with);
            }
            uuid::Uuid::parse_str(&text).map_err(|e| e.to_string())
        };
        Ok(Some((pad('0')?, pad('f')?)))
    }
}

/// A task suspended after running out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The dead-lettered task (its invocation id).
    pub task: InvocationId,
    /// Its execution.
    pub execution: ExecutionId,
    /// Its function.
    pub function: String,
    /// Its queue.
    pub queue: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Retries it had used.
    pub retries: u32,
    /// When.
    pub failed_at: Timestamp,
}

/// What [`IdempotencyStore::begin_idempotent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key was free (or already owned by this invocation): run the body.
    Owner,
    /// A run with this key already succeeded: its encoded value.
    Done(Vec<u8>),
    /// Another invocation owns the key and has not finished: wait.
    Running {
        /// The owner.
        owner: InvocationId,
    },
}

/// How many rows a cleanup removed (or would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Executions.
    pub executions: u64,
    /// Tasks.
    pub tasks: u64,
    /// Journal events.
    pub events: u64,
}

/// State of a task (a row of the work queue), as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TaskState {
    /// Runnable once its `run_at` has come.
    Ready,
    /// Claimed by a worker under a lease.
    Leased,
    /// Parked until woken (a delivery or a signal); it has no pending timer.
    Waiting,
    /// Finished.
    Done,
    /// Stopped by a non-determinism report.
    Paused,
    /// Dead-lettered: waits for a person to replay or discard it.
    Dead,
    /// Its execution was ended (cancelled or timed out).
    Cancelled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 7] = [
        TaskState::Ready,
        TaskState::Leased,
        TaskState::Waiting,
        TaskState::Done,
        TaskState::Paused,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Ready => "ready",
            TaskState::Leased => "leased",
            TaskState::Waiting => "waiting",
            TaskState::Done => "done",
            TaskState::Paused => "paused",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker that announced itself: what it serves, and until when it is
/// presumed alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its id.
    pub id: WorkerId,
    /// The functions it claims.
    pub functions: Vec<String>,
    /// Only tasks of these queues (`None`: any).
    pub queues: Option<Vec<String>>,
    /// Only tasks carrying one of these tags (`None`: any).
    pub tags: Option<Vec<String>>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it last announced itself.
    pub seen_at: Timestamp,
    /// Past this, without another announcement, it is presumed gone.
    pub expires_at: Timestamp,
}

impl WorkerRecord {
    /// True if the worker, alive at `now`, would claim a task of `function`
    /// routed by `routing`.
    ///
    /// ```
    /// # use stent_journal::store::{Routing, WorkerRecord};
    /// # use stent_journal::{Timestamp, WorkerId};
    /// let w = WorkerRecord {
    ///     id: WorkerId::new("w1"),
    ///     functions: vec!["shop::charge".into()],
    ///     queues: Some(vec!["payments".into()]),
    ///     tags: None,
    ///     started_at: Timestamp(0),
    ///     seen_at: Timestamp(10),
    ///     expires_at: Timestamp(100),
    /// };
    /// let payments = Routing { queue: "payments".into(), ..Routing::default() };
    /// assert!(w.serves("shop::charge", &payments, Timestamp(50)));
    /// assert!(!w.serves("shop::charge", &Routing::default(), Timestamp(50)));
    /// assert!(!w.serves("shop::charge", &payments, Timestamp(101)));
    /// ```
    pub fn serves(&self, function: &str, routing: &Routing, now: Timestamp) -> bool {
        self.expires_at >= now
            && self.functions.iter().any(|f| f == function)
            && self
                .queues
                .as_ref()
                .is_none_or(|q| q.contains(&routing.queue))
            && self
                .tags
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| routing.tags.contains(t)))
    }
}

/// A stored task, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The invocation it runs (also the task's id).
    pub invocation: InvocationId,
    /// Its execution.
    pub execution: ExecutionId,
    /// Its function.
    pub function: String,
    /// Queue, priority and tags.
    pub routing: Routing,
    /// State.
    pub state: TaskState,
    /// Earliest time it may be claimed.
    pub run_at: Timestamp,
    /// The worker holding the lease, while leased.
    pub lease_owner: Option<WorkerId>,
    /// When the lease runs out, while leased.
    pub lease_until: Option<Timestamp>,
    /// Lease epoch (bumped on every claim).
    pub epoch: LeaseEpoch,
    /// Claims since the lease holder last committed.
    pub attempts: u32,
    /// Retries so far.
    pub retries: u32,
    /// The last failed attempt: when, and why (kept until the next one).
    pub last_failure: Option<(Timestamp, String)>,
}

/// Filter and page for listing tasks. Tasks are listed in creation order.
/// Built like [`ExecutionFilter`]: [`Default`] and the setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TaskFilter {
    /// Only tasks of this execution.
    pub execution: Option<ExecutionId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks in this queue.
    pub queue: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// Work in one queue, counted over tasks that are not finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Tasks in state ready, whatever their `run_at` (what
    /// [`ExecutionStore::queue_depth`] counts).
    pub ready: u64,
    /// Ready tasks whose `run_at` has come.
    pub due: u64,
    /// Leased tasks (running on a worker, or whose lease has run out).
    pub leased: u64,
    /// Parked tasks waiting to be woken.
    pub waiting: u64,
}

/// Counts over the whole store, for dashboards and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Executions per status, every status listed (in [`ExecutionStatus::ALL`] order).
    pub executions: Vec<(ExecutionStatus, u64)>,
    /// Tasks per state, every state listed (in [`TaskState::ALL`] order).
    pub tasks: Vec<(TaskState, u64)>,
    /// Queues that hold a ready, leased or waiting task, by name.
    pub queues: Vec<QueueStats>,
    /// Dead letters waiting for a person.
    pub dead_letters: u64,
    /// Unfinished (pending, running or paused) executions per code version,
    /// by version (`None`, not pinned yet, first).
    pub versions: Vec<(Option<String>, u64)>,
}

/// Reading journals.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// The journal of `invocation` from `from` (inclusive), in seq order.
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>>;
    /// Every journal row of every invocation of `execution` (only those of
    /// `kinds`, if given), grouped by invocation in task creation order, each
    /// in seq order. Invocations without a matching row are left out.
    async fn read_execution_journal(
        &self,
        execution: ExecutionId,
        kinds: Option<&[EventKind]>,
    ) -> StoreResult<Vec<(InvocationId, Vec<JournalRow>)>>;
}

/// Creating and reading executions.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Creates the execution, its root task and the root's `Started` event atomically.
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()>;
    /// One execution.
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>>;
    /// A page of executions, newest first.
    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>>;
    /// Tasks ready or waiting to be claimed (in `queue`, or in all queues).
    async fn queue_depth(&self, queue: Option<&str>, now: Timestamp) -> StoreResult<u64>;
    /// Ends a non-terminal execution for good with `status` (`Cancelled` or
    /// `TimedOut`) and `terminal_event`: `terminal_event` is stored as the
    /// execution's and appended to its root journal (after its last event),
    /// so the timeline says how it ended; every task of it that is not done
    /// becomes `cancelled` (not claimable; leases held on them are lost, so
    /// their holders' commits are refused). False if it had already ended.
    /// [`StoreError::NotFound`] if it does not exist.
    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Deletes executions that ended before `before` (with their tasks,
    /// journals, inbox items, signals and dead letters); with `dry_run`
    /// only counts them.
    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts>;
    /// Resumes an execution paused by non-determinism: it becomes `running`
    /// again (its pause report cleared) and every `paused` task of it
    /// becomes runnable at `now`. False if it was not paused.
    /// [`StoreError::NotFound`] if it does not exist.
    ///
    /// The default refuses: a backend (or a wrapper around one) that does
    /// not implement it cannot resume executions.
    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        let _ = now;
        Err(StoreError::database(format!(
            "this storage backend cannot resume execution {id}: it does not implement ExecutionStore::resume_execution"
        )))
    }
}

/// Dead letters: tasks suspended after running out of attempts.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// The newest dead letters first.
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>>;
    /// One dead letter.
    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>>;
    /// Removes the dead letter and makes its task runnable now (optionally
    /// in another queue; `reset_retries` sets its retries back to 0). False if
    /// there was no such dead letter.
    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Removes the dead letter and ends its task (state `done`), delivering
    /// `deliver` to the parent or recording `execution` as the outcome — what
    /// a finishing task would. False if there was no such dead letter.
    async fn discard_dead_letter(
        &self,
        task: InvocationId,
        deliver: Option<Delivery>,
        execution: Option<ExecutionOutcome>,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

/// Results shared across executions, by call key.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The cached value of `key`, if any.
    async fn cache_get(&self, key: CallKey) -> StoreResult<Option<Vec<u8>>>;
}

/// At-most-once bodies across executions, by idempotency key.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Takes `key` for `owner` if free (or already its own), or reports the
    /// stored result or the running owner. Committed at once.
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin>;
}

/// Claiming, renewing and committing work.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Leases up to `limit` runnable tasks (highest priority, then earliest
    /// `run_at`), including tasks whose lease has expired. Each claim bumps the epoch.
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>>;
    /// [`claim`](TaskStore::claim), and with each claimed task its whole
    /// journal (seq order) when the backend can read it with the claim, so a
    /// worker needs no read per claimed task; `None` for a task means "read it
    /// yourself". Journals returned here are read after the lease was taken,
    /// so they hold every event the task's previous lease holders committed.
    ///
    /// The default claims and returns no journals, which is always correct.
    async fn claim_with_journal(
        &self,
        request: ClaimRequest,
    ) -> StoreResult<Vec<(ClaimedTask, Option<Vec<JournalRow>>)>> {
        Ok(self
            .claim(request)
            .await?
            .into_iter()
            .map(|task| (task, None))
            .collect())
    }
    /// Extends the leases still held, to `until`, asked at `now` (a
    /// backend that decides leases by its own clock extends them by
    /// `until - now` from its time); returns those that were lost.
    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>>;
    /// Records that `worker` is alive and what it serves (replacing what it
    /// announced before), so operators and other processes can tell a task
    /// no worker serves.
    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()>;
    /// Forgets a worker that stops.
    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()>;
    /// A worker that held the lease on `invocation` at `epoch` is alive
    /// and found the lease gone. If the last claim of the task took that
    /// lease over after it lapsed (the database or the network was away,
    /// or the worker stalled), that claim followed no crash: it is taken
    /// off [`ClaimedTask::attempts`], once, unless the task committed
    /// since. Anything else (the lease was released by a commit, a later
    /// claim took the task over again) is left as it is.
    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()>;
    /// Results delivered to `invocation` and not yet journaled.
    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>>;
    /// Applies the turns atomically, each fenced by its epoch.
    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()>;
}

/// Signals sent to executions.
#[async_trait]
pub trait SignalStore: Send + Sync {
    /// Stores a signal and wakes the execution's parked tasks.
    /// [`StoreError::NotFound`] if the execution does not exist,
    /// [`StoreError::ExecutionEnded`] (nothing stored) if it has ended; a
    /// paused execution takes signals (it may be resumed).
    ///
    /// With a `key`, the signal is stored at most once per execution and
    /// key: if one was stored under `key` already (a send whose reply was
    /// lost, sent again), nothing is stored and its id is returned, even if
    /// the execution has ended since; [`StoreError::Conflict`] if that one
    /// had another name or payload.
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId>;
    /// [`SignalStore::send_signal_keyed`] without a key.
    async fn send_signal(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        self.send_signal_keyed(execution, name, payload, None, now)
            .await
    }
    /// Unconsumed signals of the execution with one of `names` (every name
    /// when `names` is empty), oldest first.
    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>>;
}

/// Read-only views for operators: tasks and whole-store counts.
#[async_trait]
pub trait InspectStore: Send + Sync {
    /// A page of tasks in creation order, filtered.
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>>;
    /// One task (by its invocation id).
    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>>;
    /// Executions per status, tasks per state, per-queue work (`due` counts
    /// ready tasks whose `run_at` is at or before `now`) and dead letters.
    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats>;
    /// The workers that announced themselves and were not retired, by id
    /// (those presumed gone too: see [`WorkerRecord::expires_at`]).
    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>>;
    /// The failed attempts of a task that were retried, oldest first: the
    /// last [`ATTEMPT_FAILURES_KEPT`] of them. Empty for an unknown task.
    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>>;
}

/// One failed attempt of a task, recorded when the task was retried for
/// it (a [`TaskDisposition::Retry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// When.
    pub at: Timestamp,
    /// Why, as the worker wrote it.
    pub error: String,
}

/// Failed attempts kept per task: older ones are dropped as new ones come,
/// so a step retried without end cannot grow its history without bound.
pub const ATTEMPT_FAILURES_KEPT: u32 = 50;

/// Everything a backend offers.
pub trait Backend:
    JournalStore
    + ExecutionStore
    + TaskStore
    + SignalStore
    + DeadLetterStore
    + CacheStore
    + IdempotencyStore
    + InspectStore
    + 'static
{
}

impl<T> Backend for T where
    T: JournalStore
        + ExecutionStore
        + TaskStore
        + SignalStore
        + DeadLetterStore
        + CacheStore
        + IdempotencyStore
        + InspectStore
        + 'static
{
}
