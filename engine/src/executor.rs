//! The executor: [`Stent`], its builder, dispatch, and the read side
//! (`state_of`, `result_of`, `wait_for`, signals, listings).

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use stent_journal::event::{Event, EventKind, ForkOrigin};
use stent_journal::store::{
    Backend, ExecutionFilter, ExecutionRecord, ExecutionStatus, NewExecution, NewInvocation,
    SignalRecord, StoreError, TaskFilter, TaskState,
};
use stent_journal::{
    ExecutionId, Failure, IntoDuration, Payload, PayloadLimits, Seq, Serializer, Timestamp,
};

use crate::call::Call;
use crate::clock::{Clock, TokioClock};
use crate::context::{ExecutionProgress, FoldRow, fold, progress_summary};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::{MetricsRecorder, NoMetrics};
use crate::notify::NotificationBackend;
use crate::registry::{DurableFn, FunctionRegistry};
use crate::waits::{self, Wait};

/// The longest signal key accepted, in bytes.
const MAX_SIGNAL_KEY: usize = 512;

/// How waiters (`wait_for`) poll the backend between wake-ups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollSettings {
    pub min: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl PollSettings {
    pub fn next(&self, current: Duration) -> Duration {
        current.mul_f64(self.factor.max(1.0)).min(self.max)
    }
}

pub(crate) struct Inner {
    pub backend: Arc<dyn Backend>,
    pub registry: Arc<FunctionRegistry>,
    pub clock: Arc<dyn Clock>,
    pub poll: PollSettings,
    pub hub: Arc<Hub>,
    pub metrics: Arc<dyn MetricsRecorder>,
    pub limits: PayloadLimits,
    pub serializer: Serializer,
    /// The code version of this build (`StentBuilder::code_version`).
    pub code_version: Option<String>,
}

/// The stent executor: dispatches durable functions, runs workers, and
/// answers questions about executions. Cheap to clone.
///
/// ```no_run
/// use stent::Stent;
///
/// #[stent::durable]
/// async fn add(a: i64, b: i64) -> Result<i64, String> {
///     Ok(a + b)
/// }
///
/// # async fn demo() -> Result<(), stent::Error> {
/// let backend = stent::backends::SqliteBackend::open("stent.db").await?;
/// backend.init_db().await?;
/// let executor = Stent::new(backend);
/// let id = executor.dispatch(add(1, 2)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Stent {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Stent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stent")
            .field("functions", &self.inner.registry.names())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Stent`] with non-default settings.
pub struct StentBuilder {
    backend: Arc<dyn Backend>,
    registry: Option<Arc<FunctionRegistry>>,
    clock: Option<Arc<dyn Clock>>,
    poll: PollSettings,
    metrics: Option<Arc<dyn MetricsRecorder>>,
    limits: PayloadLimits,
    serializer: Serializer,
    notifier: Option<Arc<dyn NotificationBackend>>,
    code_version: Option<String>,
}

impl StentBuilder {
    /// The code version of this build: a release tag, a commit, a date.
    /// Executions this executor dispatches run on it: only workers of this
    /// version (or that list it in `WorkerBuilder::also_runs`) claim them,
    /// so old and new workers can run side by side during a deploy, each
    /// finishing its own. Its workers claim only executions of this
    /// version, of the versions they also run, and those not pinned yet
    /// (which take this version). Without one (the default) executions are
    /// not pinned at dispatch and workers claim every execution.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), stent::Error> {
    /// let backend = stent::backends::SqliteBackend::open("app.db").await?;
    /// let stent = stent::Stent::builder(backend)
    ///     .code_version(env!("CARGO_PKG_VERSION"))
    ///     .build();
    /// # let _ = stent;
    /// # Ok(()) }
    /// ```
    pub fn code_version(mut self, version: impl Into<String>) -> Self {
        let version = version.into();
        self.code_version = (!version.trim().is_empty()).then_some(version);
        self
    }

    /// Use this registry instead of the global one.
    pub fn function_registry(mut self, registry: FunctionRegistry) -> Self {
        self.registry = Some(Arc::new(registry));
        self
    }

    /// Use this clock (tests drive time with their own).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Largest and deepest value stored: arguments and signal payloads
    /// (refused by `dispatch` and `send_signal`), and results, errors,
    /// call arguments and context writes (a result over the limit fails
    /// its call with a message that says so; nothing unreadable is
    /// stored). Never past the defaults (16 MiB, 128 levels) less a little
    /// room for the journal event around the value
    /// ([`PayloadLimits::for_values`]).
    pub fn payload_limits(mut self, limits: PayloadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How arguments, results, errors, signal payloads and custom state are
    /// encoded (the seed's `serializer=`): [`Serializer::Cbor`] (the default)
    /// or [`Serializer::Json`], which accepts only JSON-representable values
    /// so every stored payload reads back as JSON. See [`Serializer`].
    ///
    /// ```
    /// use stent::{Serializer, Stent};
    ///
    /// let executor = Stent::builder(stent::backends::MemoryBackend::new())
    ///     .serializer("json".parse::<Serializer>()?)
    ///     .build();
    /// # let _ = executor;
    /// # Ok::<(), stent::journal::CodecError>(())
    /// ```
    pub fn serializer(mut self, serializer: Serializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// Report the engine's events to this recorder (default: none).
    pub fn metrics(mut self, recorder: impl MetricsRecorder) -> Self {
        self.metrics = Some(Arc::new(recorder));
        self
    }

    /// How idle workers and `wait_for` callers are woken (seed:
    /// `notification_backend=`). Default:
    /// [`InProcessNotifier`](crate::notifications::InProcessNotifier),
    /// which wakes those of this process only; with several worker
    /// processes give every executor a `RedisNotifier` or a
    /// `PostgresNotifier` on the same server (see [`crate::notifications`]).
    /// [`NoNotifications`](crate::notifications::NoNotifications) leaves
    /// polling alone. (With none given, the environment variable
    /// `STENT_NOTIFICATIONS=none` selects `NoNotifications`.)
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), stent::Error> {
    /// let backend = stent::backends::SqliteBackend::open("stent.db").await?;
    /// let executor = stent::Stent::builder(backend)
    ///     .notification_backend(stent::notifications::NoNotifications)
    ///     .build();
    /// # let _ = executor;
    /// # Ok(()) }
    /// ```
    pub fn notification_backend(mut self, notifier: impl NotificationBackend) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// Shortest interval between polls of a waiter (default 100 ms).
    pub fn poll_min_interval(mut self, d: Duration) -> Self {
        self.poll.min = d;
        self
    }

    /// Longest interval between polls of a waiter (default 5 s).
    pub fn poll_max_interval(mut self, d: Duration) -> Self {
        self.poll.max = d;
        self
    }

    /// Growth factor of the polling interval (default 2.0).
    pub fn poll_backoff_factor(mut self, f: f64) -> Self {
        self.poll.factor = f;
        self
    }

    /// Builds the executor.
    pub fn build(self) -> Stent {
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(TokioClock::new()));
        let notifier = self.notifier.unwrap_or_else(crate::notify::default_backend);
        Stent {
            inner: Arc::new(Inner {
                backend: self.backend,
                registry: self.registry.unwrap_or_else(FunctionRegistry::global),
                hub: {
                    let hub = Hub::new(notifier, clock.clone());
                    // Listen for other processes' notifications from the
                    // start (when built inside a runtime; otherwise at the
                    // first wake-up).
                    hub.ensure_started();
                    hub
                },
                clock,
                poll: self.poll,
                metrics: self.metrics.unwrap_or_else(|| Arc::new(NoMetrics)),
                limits: self.limits,
                serializer: self.serializer,
                code_version: self.code_version,
            }),
        }
    }
}

/// How a cancelled or timed-out execution was interrupted
/// ([`ExecutionState::interruption`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interruption {
    /// Cancelled ([`Stent::cancel`], [`Stent::cancel_with_reason`],
    /// `stent cancel`).
    Cancelled {
        /// The reason the canceller gave, if any.
        reason: Option<String>,
    },
    /// Its deadline (`expiry` or `max_duration`) passed before it ended.
    TimedOut {
        /// The deadline.
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interruption::Cancelled { reason: Some(r) } => write!(f, "cancelled: {r}"),
            Interruption::Cancelled { reason: None } => f.write_str("cancelled (no reason given)"),
            Interruption::TimedOut { deadline: Some(d) } => write!(
                f,
                "timed out: its deadline {} passed",
                d.format("%Y-%m-%d %H:%M:%S%.3f UTC")
            ),
            Interruption::TimedOut { deadline: None } => {
                f.write_str("timed out: its deadline passed")
            }
        }
    }
}

/// What [`Stent::state_of`] reports about an execution.
///
/// Counters, custom state and progress are folded from the journals of
/// all the execution's invocations (the journal is the truth).
///
/// ```no_run
/// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
/// let state = executor.state_of(id).await?;
/// println!("{}: {} (retries: {})", state.state, state.progress_str, state.retries);
/// let done = state.counters.get("processed").copied().unwrap_or(0.0);
/// let phase: Option<String> = state.custom_state_as("phase")?;
/// # let _ = (done, phase);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExecutionState {
    /// Execution id.
    pub id: ExecutionId,
    /// Root function name.
    pub function: String,
    /// Current state.
    pub state: ExecutionStatus,
    /// Dispatch time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// First claim by a worker.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Priority.
    pub priority: i32,
    /// Queue.
    pub queue: String,
    /// The outcome once finished: `Ok(value)` or the failure.
    pub result: Option<std::result::Result<Payload, Failure>>,
    /// Why it is paused, as text: the non-determinism report (with the
    /// field diffs, one per line), or the signal set aside. `None` unless
    /// paused.
    pub pause_report: Option<String>,
    /// Why it is paused, structured: where the code and the journal
    /// disagree (seq, recorded and asked events, field diffs, a reorder),
    /// or which signal was set aside. `None` unless paused.
    pub pause: Option<stent_journal::PauseReport>,
    /// Retries so far, summed over the execution's tasks.
    pub retries: u32,
    /// The code version it runs on (`None`: not pinned; see
    /// `StentBuilder::code_version`).
    pub code_version: Option<String>,
    /// Execution-scoped counters (`Stent::context()?.counters(name).add(n)`).
    /// `f64`, so integers are exact up to 2^53.
    pub counters: BTreeMap<String, f64>,
    /// Execution-scoped custom state (`Stent::context()?.state(key).set(&v)`),
    /// as CBOR: decode with [`Payload::decode`] or
    /// [`ExecutionState::custom_state_as`].
    pub custom_state: BTreeMap<String, Payload>,
    /// One entry per durable call made in the execution (nested ones
    /// included), in the order they were journaled.
    pub progress: Vec<ExecutionProgress>,
    /// Human-readable progress, like `"3/5 calls done"` or
    /// `"4/5 calls done, 1 failed"`.
    pub progress_str: String,
    /// What it waits for now, while it runs: pending timers, signal waits,
    /// calls (with where each call's task stands: ready, running on a
    /// worker, retrying, dead-lettered…) in it and in the calls it made, or
    /// a worker to claim it. Empty once it has ended, and while paused (see
    /// [`pause_report`](Self::pause_report)).
    pub waits: Vec<Wait>,
    /// Signals sent to it that no wait has taken yet, oldest first (a
    /// signal sent before its wait, or under a name the code never waits
    /// for). Empty once it has ended.
    pub unconsumed_signals: Vec<SignalRecord>,
    /// Why some of this execution's stored data could not be read (an
    /// undecodable terminal event or journal row), naming what; the fields
    /// it would have filled are left empty. `None` when everything read.
    /// A listing shows the other executions and marks this one.
    pub corrupt: Option<String>,
    /// How a cancelled or timed-out execution was interrupted: the reason
    /// its canceller gave, or the deadline it passed. `None` for an
    /// execution that is not cancelled or timed out.
    pub interruption: Option<Interruption>,
    /// For an execution made by [`Stent::fork`]: the execution it was
    /// forked from and the first seq not copied. Read from its journal (so
    /// `None` in listings, which do not read journals).
    pub forked_from: Option<ForkOrigin>,
}

impl ExecutionState {
    /// The custom-state entry `key` decoded as `T`; `Ok(None)` if never set.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// let phase: Option<String> = executor.state_of(id).await?.custom_state_as("phase")?;
    /// # let _ = phase;
    /// # Ok(()) }
    /// ```
    pub fn custom_state_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.custom_state
            .get(key)
            .map(|p| p.decode().map_err(Error::from))
            .transpose()
    }

    /// The execution of `record`, its derived fields folded from its
    /// journal. Data that does not decode marks it [`corrupt`](Self::corrupt)
    /// instead of failing; only a storage failure is an error.
    async fn read(record: ExecutionRecord, backend: &dyn Backend, now: Timestamp) -> Result<Self> {
        let mut state = ExecutionState::from_record(record);
        match read_fold_rows(backend, state.id).await {
            Ok(rows) => {
                if !state.state.is_terminal() && state.state != ExecutionStatus::Paused {
                    state.waits = read_waits(backend, state.id, &rows, now).await?;
                }
                if !state.state.is_terminal() {
                    state.unconsumed_signals = backend.pending_signals(state.id, &[]).await?;
                }
                let derived = fold(rows);
                state.progress_str = progress_summary(&derived.progress);
                state.counters = derived.counters;
                state.custom_state = derived.custom_state;
                state.progress = derived.progress;
                state.forked_from = derived.forked_from;
            }
            Err(Error::Backend(StoreError::Corrupt(why))) => {
                let why = format!("its journal cannot be read: {why}");
                state.corrupt = Some(match state.corrupt.take() {
                    Some(earlier) => format!("{earlier}; {why}"),
                    None => why,
                });
            }
            Err(e) => return Err(e),
        }
        Ok(state)
    }

    /// The stored record alone, with empty derived fields (see
    /// [`ExecutionState::read`]).
    fn from_record(r: ExecutionRecord) -> Self {
        let (result, corrupt, interruption) = match &r.terminal_event {
            Some(bytes) => match Event::decode(bytes) {
                Ok(Event::Completed { value }) => (Some(Ok(value)), None, None),
                Ok(Event::Failed { failure }) => (Some(Err(failure)), None, None),
                Ok(Event::Cancelled { reason }) => {
                    (None, None, Some(Interruption::Cancelled { reason }))
                }
                Ok(Event::TimedOut { deadline }) => (
                    None,
                    None,
                    Some(Interruption::TimedOut {
                        deadline: deadline.map(Timestamp::to_datetime),
                    }),
                ),
                Ok(_) => (None, None, None),
                Err(e) => (
                    None,
                    Some(format!("its terminal event cannot be read: {e}")),
                    None,
                ),
            },
            None => (None, None, None),
        };
        let pause = r.pause();
        // The status is the truth; the event adds the details it recorded.
        let interruption = match r.status {
            ExecutionStatus::Cancelled => {
                interruption.or(Some(Interruption::Cancelled { reason: None }))
            }
            ExecutionStatus::TimedOut => interruption.or(Some(Interruption::TimedOut {
                deadline: r.deadline.map(Timestamp::to_datetime),
            })),
            _ => None,
        };
        ExecutionState {
            id: r.id,
            function: r.function,
            state: r.status,
            created_at: r.created_at.to_datetime(),
            started_at: r.started_at.map(Timestamp::to_datetime),
            completed_at: r.completed_at.map(Timestamp::to_datetime),
            tags: r.routing.tags,
            priority: r.routing.priority,
            queue: r.routing.queue,
            result,
            pause_report: pause.as_ref().map(|p| p.text.clone()),
            pause,
            retries: r.retries,
            code_version: r.code_version,
            counters: BTreeMap::new(),
            custom_state: BTreeMap::new(),
            progress: Vec::new(),
            progress_str: progress_summary(&[]),
            waits: Vec::new(),
            unconsumed_signals: Vec::new(),
            corrupt,
            interruption,
            forked_from: None,
        }
    }
}

/// The waits of a running execution whose journal rows are `rows` (see
/// [`crate::waits`]): its tasks and dead letters read to tell where each
/// pending call stands.
async fn read_waits(
    backend: &dyn Backend,
    id: ExecutionId,
    rows: &[FoldRow],
    now: Timestamp,
) -> Result<Vec<Wait>> {
    let tasks = backend
        .list_tasks(TaskFilter::default().execution(id).limit(usize::MAX >> 1))
        .await?;
    let mut dead = HashMap::new();
    for t in tasks.iter().filter(|t| t.state == TaskState::Dead) {
        if let Some(letter) = backend.get_dead_letter(t.invocation).await? {
            dead.insert(t.invocation, letter.reason);
        }
    }
    let workers = backend.workers().await?;
    let mut waits = waits::waits(rows, &tasks, &dead, &workers, now);
    if let Some(root) = tasks.iter().find(|t| t.invocation == id.root_invocation())
        && let Some(claim) = waits::claim_wait(root, &workers, now, !waits.is_empty())
    {
        waits.insert(0, claim);
    }
    Ok(waits)
}

/// The journal kinds `state_of` folds (context writes and calls) and reads
/// the waits from (effects, their answers, terminal events).
const FOLDED_KINDS: [EventKind; 14] = [
    EventKind::Started,
    EventKind::ContextWrite,
    EventKind::CallScheduled,
    EventKind::CallCompleted,
    EventKind::CallFailed,
    EventKind::CacheHit,
    EventKind::TimerStarted,
    EventKind::TimerFired,
    EventKind::SignalAwaited,
    EventKind::SignalReceived,
    EventKind::Completed,
    EventKind::Failed,
    EventKind::Cancelled,
    EventKind::TimedOut,
];

/// The events `state_of` folds, from every invocation of the execution.
async fn read_fold_rows(backend: &dyn Backend, id: ExecutionId) -> Result<Vec<FoldRow>> {
    let journals = backend
        .read_execution_journal(id, Some(&FOLDED_KINDS))
        .await?;
    let mut rows = Vec::new();
    for (invocation, journal) in journals {
        for row in journal {
            rows.push(FoldRow {
                invocation,
                seq: row.seq,
                recorded_at: row.recorded_at,
                event: Event::decode(&row.bytes).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "journal of invocation {invocation} at seq {}: {e}",
                        row.seq
                    ))
                })?,
            });
        }
    }
    Ok(rows)
}

impl Stent {
    /// An executor over `backend` with default settings and the global registry.
    pub fn new(backend: impl Backend) -> Stent {
        Self::builder(backend).build()
    }

    /// A builder over `backend`.
    pub fn builder(backend: impl Backend) -> StentBuilder {
        StentBuilder {
            backend: Arc::new(backend),
            registry: None,
            clock: None,
            metrics: None,
            limits: PayloadLimits::default(),
            serializer: Serializer::default(),
            notifier: None,
            code_version: None,
            poll: PollSettings {
                min: Duration::from_millis(100),
                max: Duration::from_secs(5),
                factor: 2.0,
            },
        }
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The function registry in use.
    pub fn registry(&self) -> &FunctionRegistry {
        &self.inner.registry
    }

    /// The current time on the executor's clock (not journaled; inside a
    /// durable function use [`Stent::now`]).
    pub fn clock_now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The code version of this build (see `StentBuilder::code_version`).
    pub fn code_version(&self) -> Option<&str> {
        self.inner.code_version.as_deref()
    }

    /// Starts a new execution of a durable function call. Options are set on
    /// the returned builder; awaiting it returns the execution id.
    ///
    /// ```no_run
    /// # #[stent::durable] async fn my_wf(x: u32) -> Result<u32, String> { Ok(x) }
    /// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
    /// let id = executor.dispatch(my_wf(7)).expiry("1h").delay("30s").priority(10).await?;
    /// # Ok(()) }
    /// ```
    pub fn dispatch<D: DurableFn>(&self, call: Call<D>) -> Dispatch<'_, D> {
        Dispatch {
            stent: self,
            call,
            expiry: None,
            max_duration: None,
            delay: None,
            tags: None,
            priority: None,
            queue: None,
            id: None,
        }
    }

    /// The state of an execution: its stored record plus counters, custom
    /// state and per-call progress folded from its journal.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// let state = executor.state_of(id).await?;
    /// println!("{}: {}", state.state, state.progress_str);
    /// # Ok(()) }
    /// ```
    pub async fn state_of(&self, id: ExecutionId) -> Result<ExecutionState> {
        let record = self
            .inner
            .backend
            .execution(id)
            .await?
            .ok_or(Error::NotFound(id))?;
        ExecutionState::read(record, &*self.inner.backend, self.inner.clock.now()).await
    }

    /// The result of a finished execution, typed: `Ok(Ok(value))`,
    /// `Ok(Err(the function's error))`, or an [`Error`] saying why there is
    /// none ([`Error::NotFound`], [`Error::StillRunning`], [`Error::Cancelled`], …).
    pub async fn result_of<T: DeserializeOwned, E: DeserializeOwned>(
        &self,
        id: ExecutionId,
    ) -> Result<std::result::Result<T, E>> {
        let record = self
            .inner
            .backend
            .execution(id)
            .await?
            .ok_or(Error::NotFound(id))?;
        typed_result(record)
    }

    /// Waits until the execution finishes and returns its typed result.
    /// With `expiry`, gives up after that long with [`Error::Expiry`].
    ///
    /// While the execution's root runs in a worker of this process, the
    /// result comes from that worker, without a read of storage; otherwise
    /// (and after each poll interval either way) the execution is read.
    ///
    /// A read that fails for a reason that passes (the database away, a
    /// lost connection: [`StoreError::is_transient`]) is logged and made
    /// again with the usual backoff, so a database restart does not end
    /// the wait; any other storage error ends it.
    ///
    /// [`StoreError::is_transient`]: stent_journal::store::StoreError::is_transient
    pub async fn wait_for<T: DeserializeOwned, E: DeserializeOwned>(
        &self,
        id: ExecutionId,
        expiry: Option<Duration>,
    ) -> Result<std::result::Result<T, E>> {
        let watch = self.inner.hub.watch(id);
        let wait = async {
            let mut interval = self.inner.poll.min;
            let mut first = true;
            loop {
                let finished = watch.notified();
                tokio::pin!(finished);
                finished.as_mut().enable();
                // Ended by a worker of this process while we waited: no
                // need to read back what it just wrote.
                if let Some(outcome) = self.inner.hub.outcome(id) {
                    return typed_outcome(id, outcome.status, Some(outcome.terminal_event), None);
                }
                // Its root runs here: its end is announced here, so the
                // first read would only find it running. Later rounds read,
                // in case it moved (a takeover) or ended elsewhere.
                let read = !(first && self.inner.hub.is_resident(id.root_invocation()));
                first = false;
                if read {
                    match self.inner.backend.execution(id).await {
                        Ok(Some(record))
                            if record.status.is_terminal()
                                || record.status == ExecutionStatus::Paused =>
                        {
                            return typed_result(record);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => return Err(Error::NotFound(id)),
                        // A read: safe to make again. The wait goes on
                        // through a database that is away for a while
                        // (bounded by `expiry`); anything else ends it.
                        Err(e) if e.is_transient() => {
                            tracing::warn!(execution = %id, error = %e, "wait_for could not read the execution; reading again");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if tokio::time::timeout(interval, finished).await.is_err() {
                    interval = self.inner.poll.next(interval);
                }
            }
        };
        let outcome = match expiry {
            None => wait.await,
            Some(limit) => tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| Error::Expiry {
                    what: format!("execution {id}"),
                    waited: limit,
                })
                .and_then(|r| r),
        };
        drop(watch);
        self.inner.hub.unwatch(id);
        outcome
    }

    /// Sends a signal to an execution. It is kept until a
    /// `Stent::wait_for_signal(name)` in that execution consumes it.
    /// [`Error::NotFound`] if there is no such execution, [`Error::Ended`]
    /// (nothing stored) if it has ended; a paused execution takes signals.
    pub async fn send_signal(
        &self,
        id: ExecutionId,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<()> {
        self.signal(id, name, payload, None).await
    }

    /// Sends a signal like [`Stent::send_signal`], at most once per
    /// execution and `key` (a message id, a request id): a client that does
    /// not know whether a send landed (its reply was lost) sends it again
    /// under the same key, and the execution receives it once. Sending
    /// again after the execution took it and ended is `Ok` too: the signal
    /// was delivered. The same key with another name or payload is refused
    /// ([`StoreError::Conflict`]), and nothing is stored. A key that is
    /// empty or longer than 512 bytes is [`Error::InvalidArgument`].
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// executor.send_signal_with_key(id, "approval", &"alice", "ticket-4411").await?;
    /// // Retried after a lost reply: stored once.
    /// executor.send_signal_with_key(id, "approval", &"alice", "ticket-4411").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_signal_with_key(
        &self,
        id: ExecutionId,
        name: &str,
        payload: &impl Serialize,
        key: &str,
    ) -> Result<()> {
        if key.is_empty() || key.len() > MAX_SIGNAL_KEY {
            return Err(Error::InvalidArgument(format!(
                "a signal key is 1 to {MAX_SIGNAL_KEY} bytes; this one has {} (nothing was sent)",
                key.len()
            )));
        }
        self.signal(id, name, payload, Some(key)).await
    }

    async fn signal(
        &self,
        id: ExecutionId,
        name: &str,
        payload: &impl Serialize,
        key: Option<&str>,
    ) -> Result<()> {
        let payload = self.inner.serializer.encode(payload)?;
        payload.check(self.inner.limits.for_values())?;
        let now = self.inner.clock.now();
        match self
            .inner
            .backend
            .send_signal_keyed(id, name, payload.into_bytes(), key, now)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => return Err(Error::NotFound(id)),
            Err(StoreError::ExecutionEnded { status, .. }) => {
                return Err(Error::Ended { id, state: status });
            }
            Err(e) => return Err(e.into()),
        }
        self.inner.hub.signal_sent(id);
        Ok(())
    }

    /// A page of executions, newest first, optionally of one state. Each
    /// entry is as complete as [`Stent::state_of`] (its journal is folded
    /// too), so keep pages small on large executions.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
    /// for e in executor.list_executions(20, 0, Some(stent::ExecutionStatus::Running)).await? {
    ///     println!("{} {}", e.id, e.progress_str);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_executions(
        &self,
        limit: usize,
        offset: usize,
        state: Option<ExecutionStatus>,
    ) -> Result<Vec<ExecutionState>> {
        self.list_executions_where(
            ExecutionFilter::default()
                .status(state)
                .limit(limit)
                .offset(offset),
        )
        .await
    }

    /// A page of executions, newest first, that pass every filter set in
    /// `filter`: state, function, queue, tag, a dispatch-time window, an id
    /// prefix. Entries are as complete as [`Stent::list_executions`]'s.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
    /// use stent::journal::store::ExecutionFilter;
    /// let page = executor
    ///     .list_executions_where(
    ///         ExecutionFilter::default()
    ///             .function("shop::checkout".to_string())
    ///             .tag("vip".to_string())
    ///             .limit(20),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_executions_where(
        &self,
        filter: ExecutionFilter,
    ) -> Result<Vec<ExecutionState>> {
        let records = self.inner.backend.list_executions(filter).await?;
        let backend = &*self.inner.backend;
        let now = self.inner.clock.now();
        futures_util::future::try_join_all(
            records
                .into_iter()
                .map(|r| ExecutionState::read(r, backend, now)),
        )
        .await
    }

    /// Tasks waiting to run, in one queue or all.
    pub async fn queue_depth(&self, queue: Option<&str>) -> Result<u64> {
        Ok(self
            .inner
            .backend
            .queue_depth(queue, self.inner.clock.now())
            .await?)
    }
}

fn typed_result<T: DeserializeOwned, E: DeserializeOwned>(
    record: ExecutionRecord,
) -> Result<std::result::Result<T, E>> {
    let pause = record.pause().map(|p| p.text);
    typed_outcome(record.id, record.status, record.terminal_event, pause)
}

/// The typed result of an execution that is in `status`, from its terminal
/// event (or why there is none).
fn typed_outcome<T: DeserializeOwned, E: DeserializeOwned>(
    id: ExecutionId,
    status: ExecutionStatus,
    terminal_event: Option<Vec<u8>>,
    pause_report: Option<String>,
) -> Result<std::result::Result<T, E>> {
    match status {
        ExecutionStatus::Cancelled => return Err(Error::Cancelled(id)),
        ExecutionStatus::TimedOut => return Err(Error::TimedOut(id)),
        ExecutionStatus::Paused => {
            return Err(Error::NonDeterminism {
                id,
                report: pause_report.unwrap_or_default(),
            });
        }
        ExecutionStatus::Completed | ExecutionStatus::Failed => {}
        state => return Err(Error::StillRunning { id, state }),
    }
    let bytes = terminal_event.ok_or_else(|| {
        Error::Backend(stent_journal::store::StoreError::Corrupt(format!(
            "execution {id} is finished but has no terminal event"
        )))
    })?;
    match Event::decode(&bytes)? {
        Event::Completed { value } => Ok(Ok(value.decode()?)),
        Event::Failed {
            failure: Failure::Error { error },
        } => Ok(Err(error.decode()?)),
        Event::Failed { failure } => Err(Error::ExecutionFailed {
            id,
            message: failure.to_string(),
        }),
        other => Err(Error::Backend(stent_journal::store::StoreError::Corrupt(
            format!(
                "execution {id} ended with a {} event, not a terminal one",
                other.kind()
            ),
        ))),
    }
}

/// A pending dispatch; set options, then `.await` it for the execution id.
#[must_use = "a dispatch does nothing until awaited"]
pub struct Dispatch<'a, D: DurableFn> {
    stent: &'a Stent,
    call: Call<D>,
    expiry: Option<Result<Duration>>,
    max_duration: Option<Result<Duration>>,
    delay: Option<Result<Duration>>,
    tags: Option<Vec<String>>,
    priority: Option<i32>,
    queue: Option<String>,
    id: Option<ExecutionId>,
}

impl<D: DurableFn> Dispatch<'_, D> {
    /// Dispatch under this execution id instead of a random one. The same
    /// call dispatched again with the same id creates nothing and returns
    /// the same execution, whatever state it is in; so a client that does
    /// not know whether a dispatch landed (its connection was lost) can
    /// always dispatch again. Another call under an id that exists is
    /// [`Error::DispatchConflict`].
    pub fn execution_id(mut self, id: ExecutionId) -> Self {
        self.id = Some(id);
        self
    }

    /// Dispatch under the execution id `key` names
    /// ([`ExecutionId::from_key`]): an order number, a request id. Like
    /// [`Dispatch::execution_id`], the same call dispatched again with the
    /// same key returns the same execution.
    ///
    /// ```no_run
    /// # #[stent::durable] async fn checkout(order: u64) -> Result<(), String> { Ok(()) }
    /// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
    /// let first = executor.dispatch(checkout(42)).key("order-42").await?;
    /// // Retried after a lost reply: the same execution, nothing created.
    /// let again = executor.dispatch(checkout(42)).key("order-42").await?;
    /// assert_eq!(first, again);
    /// # Ok(()) }
    /// ```
    pub fn key(self, key: impl AsRef<str>) -> Self {
        self.execution_id(ExecutionId::from_key(key.as_ref()))
    }

    /// The execution must finish within this long (`"1h"`, a `Duration`, a `TimeDelta`…).
    pub fn expiry(mut self, d: impl IntoDuration) -> Self {
        self.expiry = Some(d.into_duration().map_err(Error::from));
        self
    }

    /// Alias of [`Dispatch::expiry`]; giving both is an error.
    pub fn max_duration(mut self, d: impl IntoDuration) -> Self {
        self.max_duration = Some(d.into_duration().map_err(Error::from));
        self
    }

    /// Start no earlier than this long from now.
    pub fn delay(mut self, d: impl IntoDuration) -> Self {
        self.delay = Some(d.into_duration().map_err(Error::from));
        self
    }

    /// Tags of this execution (replace the declared ones).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Priority of this execution (higher first).
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = Some(p);
        self
    }

    /// Queue of this execution.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }

    async fn run(self) -> Result<ExecutionId> {
        let inner = &self.stent.inner;
        let entry = inner.registry.get(D::NAME)?;
        let expiry = match (self.expiry, self.max_duration) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidConfig(
                    "give either expiry or max_duration (they are aliases), not both".into(),
                ));
            }
            (Some(e), None) | (None, Some(e)) => Some(e?),
            (None, None) => None,
        };
        let delay = self.delay.transpose()?;
        // The deadline counts from the dispatch, like the delay: one that
        // passes before the execution may start would time it out unrun.
        if let (Some(expiry), Some(delay)) = (expiry, delay)
            && expiry <= delay
        {
            return Err(Error::InvalidConfig(format!(
                "expiry ({}) must be longer than delay ({}): both count from the dispatch, so \
                 the execution would time out before it may start",
                stent_journal::format_duration(expiry),
                stent_journal::format_duration(delay)
            )));
        }
        let mut routing = entry.routing.clone();
        if let Some(t) = self.tags {
            routing.tags = t;
        }
        if let Some(p) = self.priority {
            routing.priority = p;
        }
        if let Some(q) = self.queue {
            routing.queue = q;
        }
        let args = inner.serializer.encode(&self.call.args)?;
        args.check(inner.limits.for_values())?;
        let chosen = self.id;
        let id = chosen.unwrap_or_else(ExecutionId::new_random);
        let now = inner.clock.now();
        // A worker in this process with a free slot takes the execution at
        // once: created leased to it, no claim round trip.
        let reservation = match delay {
            None => inner.hub.reserve(D::NAME, &routing, now),
            Some(_) => None,
        };
        let started = Event::Started {
            function: D::NAME.to_string(),
            version: entry.version.map(str::to_string),
            args,
            parent: None,
            forked_from: None,
        };
        let started_event = started.encode()?;
        let created = inner
            .backend
            .create_execution(NewExecution {
                id,
                function: D::NAME.to_string(),
                created_at: now,
                deadline: expiry.map(|e| now.saturating_add(e)),
                code_version: inner.code_version.clone(),
                root: NewInvocation {
                    invocation: id.root_invocation(),
                    execution: id,
                    function: D::NAME.to_string(),
                    routing,
                    run_at: delay.map(|d| now.saturating_add(d)).unwrap_or(now),
                    started_event: started_event.clone(),
                    lease: reservation.as_ref().map(|r| r.grant.clone()),
                },
            })
            .await;
        match created {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) if chosen.is_some() => {
                return self.stent.same_call(id, &started_event).await.map(|()| id);
            }
            Err(e) => return Err(e.into()),
        }
        let deadline = expiry.map(|e| now.saturating_add(e));
        match reservation {
            Some(r) => (r.start)(id, started, deadline),
            None => inner.hub.work.notify_waiters(),
        }
        Ok(id)
    }
}

impl Stent {
    /// Checks that execution `id`, which exists, was dispatched as the
    /// call whose encoded `Started` event is `started` (a dispatch retried
    /// under the same id or key).
    async fn same_call(&self, id: ExecutionId, started: &[u8]) -> Result<()> {
        let rows = self
            .inner
            .backend
            .read_journal(id.root_invocation(), Seq(0))
            .await?;
        let Some(first) = rows.first() else {
            return Err(Error::NotFound(id));
        };
        if first.bytes == started {
            return Ok(());
        }
        let describe = |bytes: &[u8]| match Event::decode(bytes) {
            Ok(Event::Started { function, .. }) => function,
            _ => "an unreadable call".to_string(),
        };
        let (existing, mut asked) = (describe(&first.bytes), describe(started));
        if existing == asked {
            asked += " with other arguments";
        }
        Err(Error::DispatchConflict {
            id,
            existing,
            asked,
        })
    }
}

impl<'a, D: DurableFn> IntoFuture for Dispatch<'a, D> {
    type Output = Result<ExecutionId>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ExecutionId>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
