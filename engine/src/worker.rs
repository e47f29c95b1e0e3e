//! The worker: claims tasks, runs invocations against their journals, and
//! commits each turn in one fenced transaction.
//!
//! An invocation stays *resident* (its future alive in memory, its lease
//! held) while it waits for child calls or a short timer, and is woken
//! in-process when a child it spawned here finishes; so an n-step workflow
//! replays nothing and costs O(n). Long waits park the task and keep the
//! driver in a bounded sticky cache; replay from the journal happens only
//! after a crash, an eviction or a move to another worker. A lone step that
//! returns as soon as it is polled runs inline, in its parent's task, and
//! is stored with its parent's next commit ([`inline`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use stent_journal::CallKey;
use stent_journal::event::{Event, ParentLink};
use stent_journal::pause::{PauseReport, SetAsideSignal};
use stent_journal::store::IdempotencyBegin;
use stent_journal::store::{
    ClaimRequest, ClaimedTask, Delivery, ExecutionOutcome, ExecutionStatus, InboxId, JournalRow,
    LeaseGrant, NewEvent, NewInvocation, Routing, SignalId, StoreError, TaskDisposition,
    TurnCommit,
};
use stent_journal::{
    ExecutionId, Failure, InvocationId, LeaseEpoch, Payload, Seq, Timestamp, WorkerId,
};
use stent_replay::{Driver, DriverError, Outstanding, Status};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::executor::{Inner, PollSettings, Stent};
use crate::hub::{Handoff, LocalClaimer, Reservation};
use crate::lifecycle::{LifecycleState, WorkerLifecycle};
use crate::registry::FunctionEntry;

mod inline;
mod presence;
mod recovery;
use inline::{Deferred, Inline, Prepared, Returned};

/// Parked drivers kept in memory for a quick resume, at most.
const STICKY_CAPACITY: usize = 4096;

/// Configures and runs a worker. Get one from [`Stent::worker`].
///
/// ```no_run
/// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
/// executor
///     .worker()
///     .worker_id("worker-1")
///     .queues(["default", "high_priority"])
///     .max_concurrency(50)
///     .lease_duration(std::time::Duration::from_secs(600))
///     .serve()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a worker does nothing until `serve` is awaited"]
pub struct WorkerBuilder {
    stent: Stent,
    worker_id: Option<String>,
    queues: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    max_concurrency: usize,
    lease_duration: Duration,
    heartbeat_interval: Option<Duration>,
    poll_interval: Duration,
    poll_interval_max: Option<Duration>,
    poll_backoff_factor: Option<f64>,
    sticky_timer: Duration,
    cleanup_interval: Option<Duration>,
    retention_period: Duration,
    lifecycle: Option<WorkerLifecycle>,
    also_runs: Vec<String>,
}

impl Stent {
    /// A worker over this executor's backend and registry.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder {
            stent: self.clone(),
            worker_id: None,
            queues: None,
            tags: None,
            max_concurrency: 10,
            lease_duration: Duration::from_secs(300),
            heartbeat_interval: None,
            poll_interval: Duration::from_secs(1),
            poll_interval_max: None,
            poll_backoff_factor: None,
            sticky_timer: Duration::from_secs(2),
            cleanup_interval: Some(Duration::from_secs(3600)),
            retention_period: Duration::from_secs(7 * 24 * 3600),
            lifecycle: None,
            also_runs: Vec::new(),
        }
    }
}

impl WorkerBuilder {
    /// The worker's name (default: a random one).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Only claim tasks of these queues.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Also claim executions of these code versions, besides those of the
    /// executor's own (`StentBuilder::code_version`): a build known to
    /// replay them (the deploy check says so) takes them over from the old
    /// workers. Only meaningful with a code version: a worker without one
    /// claims every execution.
    pub fn also_runs<I, S>(mut self, versions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.also_runs.extend(versions.into_iter().map(Into::into));
        self
    }

    /// Only claim tasks carrying at least one of these tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Most invocations running their code at once (default 10). An
    /// invocation that waits for durable effects does not hold a slot.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// How long a claim lasts without renewal (default 5 minutes).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How often leases are renewed (default: half the lease duration).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = Some(d);
        self
    }

    /// Shortest wait between polls when idle (default 1 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Longest wait between polls when idle (default: the executor's `poll_max_interval`).
    pub fn poll_interval_max(mut self, d: Duration) -> Self {
        self.poll_interval_max = Some(d);
        self
    }

    /// Growth factor of the idle poll interval (default: the executor's).
    pub fn poll_backoff_factor(mut self, f: f64) -> Self {
        self.poll_backoff_factor = Some(f);
        self
    }

    /// Timers due within this long keep the workflow resident instead of
    /// parking it (default 2 s).
    pub fn sticky_timer(mut self, d: Duration) -> Self {
        self.sticky_timer = d;
        self
    }

    /// How often this worker deletes old finished executions (default
    /// hourly; `None`: never).
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> Self {
        self.cleanup_interval = every;
        self
    }

    /// How long finished executions are kept before cleanup deletes them,
    /// whole (default 7 days).
    pub fn retention_period(mut self, keep: Duration) -> Self {
        self.retention_period = keep;
        self
    }

    /// Coordinate readiness and shutdown through this handle.
    pub fn lifecycle(mut self, lifecycle: WorkerLifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Runs the worker until its lifecycle is drained.
    pub async fn serve(self) -> Result<()> {
        let inner = self.stent.inner.clone();
        let lifecycle = self.lifecycle.unwrap_or_else(|| WorkerLifecycle::new(None));
        let poll = PollSettings {
            min: self.poll_interval,
            max: self
                .poll_interval_max
                .unwrap_or(inner.poll.max)
                .max(self.poll_interval),
            factor: self.poll_backoff_factor.unwrap_or(inner.poll.factor),
        };
        if self.lease_duration < Duration::from_millis(10) {
            return Err(Error::InvalidConfig(
                "lease_duration must be at least 10 ms".into(),
            ));
        }
        let heartbeat = self
            .heartbeat_interval
            .unwrap_or(self.lease_duration / 2)
            .max(Duration::from_millis(1));
        if heartbeat >= self.lease_duration {
            // Leases would run out between renewals: every invocation would
            // be taken over (and its step re-run) while it is still running.
            return Err(Error::InvalidConfig(format!(
                "heartbeat_interval ({heartbeat:?}) must be shorter than lease_duration ({:?}); \
                 a third of the lease is a good choice",
                self.lease_duration
            )));
        }
        let worker_id = self
            .worker_id
            .unwrap_or_else(|| format!("worker-{}", &ExecutionId::new_random().to_string()[..8]));
        let (drain_tx, drain_rx) = watch::channel(false);
        let concurrency_limits = inner.registry.concurrency_limits();
        let started = inner.clock.now();
        let core = Arc::new(Core {
            concurrency_limits,
            functions: inner.registry.served_names(),
            inner,
            id: WorkerId::new(worker_id),
            queues: self.queues,
            tags: self.tags,
            also_runs: self.also_runs,
            lease: self.lease_duration,
            poll,
            sticky_timer: self.sticky_timer,
            slots: Arc::new(Semaphore::new(self.max_concurrency)),
            slot_freed: Notify::new(),
            leases: Mutex::new(HashMap::new()),
            sticky: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            next_due: Mutex::new(None),
            // Leases taken from now on run out no earlier than this.
            renewed_until: Mutex::new(Some(started.saturating_add(self.lease_duration))),
            lapsed: Mutex::new(Vec::new()),
            started_at: started,
            heartbeat,
            warned: Mutex::new(HashSet::new()),
            drain: drain_rx,
        });
        let heartbeat_task = tokio::spawn(core.clone().heartbeat_loop(heartbeat));
        let cleanup_task = self
            .cleanup_interval
            .map(|every| tokio::spawn(core.clone().cleanup_loop(every, self.retention_period)));
        let registration = core.inner.hub.add_local_worker(core.clone());
        core.announce().await;
        lifecycle.set(LifecycleState::Ready);
        core.clone().claim_loop(lifecycle.drain_requested()).await;
        lifecycle.set(LifecycleState::Draining);
        drain_tx.send_replace(true);
        core.inner.hub.remove_local_worker(registration);
        core.wait_idle().await;
        heartbeat_task.abort();
        core.retire().await;
        if let Some(task) = cleanup_task {
            task.abort();
        }
        lifecycle.set(LifecycleState::Stopped);
        Ok(())
    }
}

struct LeaseState {
    epoch: LeaseEpoch,
    lost: Arc<AtomicBool>,
    /// The hub registration made with this lease.
    notify: Arc<Notify>,
}

struct Cached {
    driver: Driver,
    parent: Option<ParentLink>,
}

struct Core {
    inner: Arc<Inner>,
    id: WorkerId,
    queues: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    /// Code versions claimed besides the executor's own.
    also_runs: Vec<String>,
    functions: Vec<String>,
    /// `max_concurrent` of the registered functions that declare one.
    concurrency_limits: Vec<(String, u32)>,
    lease: Duration,
    poll: PollSettings,
    sticky_timer: Duration,
    slots: Arc<Semaphore>,
    slot_freed: Notify,
    leases: Mutex<HashMap<InvocationId, LeaseState>>,
    sticky: Mutex<HashMap<InvocationId, Cached>>,
    running: AtomicUsize,
    idle: Notify,
    /// Earliest time a task this worker parked or deferred becomes runnable.
    next_due: Mutex<Option<Timestamp>>,
    /// No lease this worker holds runs out before this: the expiry set by
    /// the last renewal that came back in time (or by the worker's start).
    renewed_until: Mutex<Option<Timestamp>>,
    /// Leases this worker found gone while it was alive: reported to the
    /// store so a takeover of them does not count as a crash.
    lapsed: Mutex<Vec<(InvocationId, LeaseEpoch)>>,
    /// When it started, and how often it renews leases and announces itself.
    started_at: Timestamp,
    heartbeat: Duration,
    /// Functions it warned about (no live worker serves them).
    warned: Mutex<HashSet<String>>,
    drain: watch::Receiver<bool>,
}

/// A concurrency slot; freeing it wakes the claim loop.
struct Slot {
    _permit: OwnedSemaphorePermit,
    core: Arc<Core>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.core.slot_freed.notify_one();
    }
}

/// Where a resolution came from, so the commit can mark it consumed.
enum Source {
    Inbox(InboxId),
    Signal(SignalId),
    Timer,
    Handoff(Box<Handoff>),
}

/// A held lease's in-process side: wake-ups, the lost flag, hand-offs.
struct Residence {
    notify: Arc<Notify>,
    lost: Arc<AtomicBool>,
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    handoffs_open: bool,
}

struct Running {
    invocation: InvocationId,
    execution: ExecutionId,
    epoch: LeaseEpoch,
    parent: Option<ParentLink>,
    driver: Driver,
    slot: Option<Slot>,
    residence: Residence,
    consumed_inbox: Vec<InboxId>,
    consumed_signals: Vec<SignalId>,
    /// Hand-offs whose results were applied to the driver and whose turns
    /// ride along with this invocation's next commit.
    handed_off: Vec<Handoff>,
    /// The function's registry entry (retry policy, cache, idempotency).
    entry: Option<Arc<FunctionEntry>>,
    /// Retries used so far.
    retries: u32,
    /// The execution's deadline.
    deadline: Option<Timestamp>,
    /// The idempotency key this invocation owns, once taken.
    idempotency_key: Option<String>,
    /// Seqs of new calls already looked up in the cache.
    cache_checked: HashSet<Seq>,
    /// Claimed (not started here): commit once the code reaches a durable
    /// wait, so the claim counts as healthy (it resets the crash-loop count).
    needs_checkpoint: bool,
    /// When it started on this worker (for metrics).
    started: tokio::time::Instant,
    /// Signal waits from this seq on have not been matched against stored
    /// signals yet.
    signals_fetched_before: Seq,
    /// Turns applied in memory that ride along with this invocation's next
    /// commit (an inline step's end, see [`inline`]).
    deferred: Option<Deferred>,
    /// The last step that returned inline, until a commit stores it: if
    /// that commit fails and the replayed journal schedules the same call
    /// again, its outcome is reused instead of running its body again (see
    /// [`inline`]).
    unstored: Option<Returned>,
    /// The invocation's outcome when the commit storing it failed and that
    /// commit stored nothing else of its code: once the lease and journal
    /// are read again, the same end is committed without running the code
    /// again (see [`Core::finish_keeping`]).
    unstored_end: Option<UnstoredEnd>,
    /// What the code's first poll returned, when it was polled before this
    /// task started and cannot be polled again (it returned or stopped).
    first_status: Option<Status>,
}

impl Running {
    fn new(
        invocation: InvocationId,
        execution: ExecutionId,
        epoch: LeaseEpoch,
        parent: Option<ParentLink>,
        driver: Driver,
        slot: Option<Slot>,
        residence: Residence,
    ) -> Self {
        Running {
            invocation,
            execution,
            epoch,
            parent,
            driver,
            slot,
            residence,
            consumed_inbox: Vec::new(),
            consumed_signals: Vec::new(),
            handed_off: Vec::new(),
            entry: None,
            retries: 0,
            deadline: None,
            idempotency_key: None,
            cache_checked: HashSet::new(),
            needs_checkpoint: false,
            started: tokio::time::Instant::now(),
            signals_fetched_before: Seq(0),
            deferred: None,
            unstored: None,
            unstored_end: None,
            first_status: None,
        }
    }

    fn function(&self) -> &str {
        self.entry
            .as_ref()
            .map(|e| e.name)
            .unwrap_or("<unregistered>")
    }

    fn lost(&self) -> bool {
        self.residence.lost.load(Ordering::SeqCst)
    }
}

/// An outcome whose commit failed; see [`Running::unstored_end`].
struct UnstoredEnd {
    /// The length of the stored journal it was reached from.
    journal_len: usize,
    out: std::result::Result<Payload, Failure>,
}

/// What the idempotency check decided.
enum Gate {
    /// Run the body.
    Run,
    /// Nothing more to do here (answered, or parked to wait for the owner).
    Done,
}

/// How a run of turns ended.
enum Ended {
    /// Finished, failed or paused: nothing more to do here.
    Done,
    /// Waiting for a timer or a signal; the task was released.
    Parked,
}

enum TurnError {
    LeaseLost,
    Retry(String),
}

impl From<StoreError> for TurnError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost { .. } => TurnError::LeaseLost,
            other => TurnError::Retry(other.to_string()),
        }
    }
}

enum LoadError {
    /// The journal cannot be run: pause the execution with this report.
    Corrupt(String),
    /// The journal already ends with the invocation's end: its code is
    /// never run again.
    Finished(String),
    Store(StoreError),
}

/// What [`Core::collect`] needs to know about a waiting invocation.
struct Waiting<'a> {
    invocation: InvocationId,
    execution: ExecutionId,
    outstanding: Vec<(Seq, Outstanding)>,
    /// Calls scheduled in this turn, not yet committed: nothing can have
    /// delivered their results yet.
    fresh_calls: HashSet<Seq>,
    /// Signal waits at or after this seq were created since the last fetch.
    signals_fetched_before: Seq,
    consumed_inbox: &'a [InboxId],
    consumed_signals: &'a [SignalId],
}

/// An invocation created leased to this worker, to run at once.
struct LocalStart {
    invocation: InvocationId,
    execution: ExecutionId,
    entry: Arc<FunctionEntry>,
    args: Payload,
    started: Event,
    parent: Option<ParentLink>,
    deadline: Option<Timestamp>,
    /// When the lease it was created with runs out.
    lease_until: Timestamp,
    slot: Slot,
    /// Its driver, if the code was already polled once (see [`inline`]).
    prepared: Option<Prepared>,
}

/// Crash-loop limit of functions without a retry policy: a task claimed this
/// many times in a row without its holder ever committing is dead-lettered.
const DEFAULT_CRASH_LIMIT: u32 = 3;

impl Core {
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(|p| Slot {
            _permit: p,
            core: self.clone(),
        })
    }

    fn serves(&self, routing: &Routing) -> bool {
        let queue_ok = self
            .queues
            .as_ref()
            .is_none_or(|qs| qs.contains(&routing.queue));
        let tags_ok = self
            .tags
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| routing.tags.contains(t)));
        queue_ok && tags_ok
    }

    async fn claim_loop(self: Arc<Self>, mut drain: watch::Receiver<bool>) {
        let mut backoff = self.poll.min;
        loop {
            if *drain.borrow() {
                return;
            }
            let work = self.inner.hub.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // After a stall, this worker's own leases may look expired: renew
            // them before claiming, or it would take its own running tasks
            // over (running their steps twice).
            if self.leases_may_have_lapsed() {
                self.renew_held().await;
            }
            let free = self.slots.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let limit = free.min(64);
                let now = self.now();
                let request = ClaimRequest {
                    worker: self.id.clone(),
                    now,
                    lease_until: now.saturating_add(self.lease),
                    limit,
                    queues: self.queues.clone(),
                    tags: self.tags.clone(),
                    functions: self.functions.clone(),
                    concurrency_limits: self.concurrency_limits.clone(),
                    code_version: self.inner.code_version.clone(),
                    also_runs: self.also_runs.clone(),
                };
                let lease_until = request.lease_until;
                match self.inner.backend.claim_with_journal(request).await {
                    Ok(tasks) => {
                        claimed = tasks.len();
                        let tasks = self.renew_if_late(tasks, lease_until).await;
                        for (task, journal) in tasks {
                            self.inner.metrics.task_claimed(&task.function);
                            let slot = self.try_slot();
                            self.spawn_tracked(self.clone().start_claimed(task, journal, slot));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = %self.id, error = %e, "claim failed; backing off")
                    }
                }
                if claimed > 0 {
                    backoff = self.poll.min;
                    if claimed == limit {
                        continue;
                    }
                }
            }
            // Do not sleep past a task this worker parked for a known time.
            let nap = match self.take_due_before(backoff) {
                Some(due) => due.min(backoff),
                None => backoff,
            };
            tokio::select! {
                _ = &mut work => backoff = self.poll.min,
                _ = &mut freed, if free == 0 => {}
                _ = tokio::time::sleep(nap) => {
                    if claimed == 0 {
                        backoff = self.poll.next(backoff);
                    }
                }
                _ = drain.changed() => {}
            }
        }
    }

    fn spawn_tracked<F>(self: &Arc<Self>, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.running.fetch_add(1, Ordering::SeqCst);
        let core = self.clone();
        tokio::spawn(async move {
            fut.await;
            if core.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                core.idle.notify_waiters();
            }
        });
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Claimed tasks whose leases ran out before the claim returned (a
    /// stalled store or host): renewed at once, so the claim is not taken
    /// over again right away (which would count towards the crash-loop
    /// limit); those already taken over are dropped.
    async fn renew_if_late(
        &self,
        tasks: Vec<(ClaimedTask, Option<Vec<JournalRow>>)>,
        lease_until: Timestamp,
    ) -> Vec<(ClaimedTask, Option<Vec<JournalRow>>)> {
        let now = self.now();
        if tasks.is_empty() || now < lease_until {
            return tasks;
        }
        let held: Vec<(InvocationId, LeaseEpoch)> =
            tasks.iter().map(|(t, _)| (t.invocation, t.epoch)).collect();
        match self
            .inner
            .backend
            .renew_leases(&self.id, &held, now, now.saturating_add(self.lease))
            .await
        {
            Ok(lost) => tasks
                .into_iter()
                .filter(|(t, _)| {
                    let taken = lost.contains(&t.invocation);
                    if taken {
                        tracing::warn!(invocation = %t.invocation, "claimed lease ran out and was taken over before the claim returned");
                        self.lease_gone(t.invocation, t.epoch);
                    }
                    !taken
                })
                .collect(),
            // Run them on the claimed leases: their writes are fenced.
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not renew late claims");
                tasks
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, every: Duration) {
        let mut late = false;
        loop {
            // A renewal that returned after its new expiry (a stalled store
            // or host) is repeated at once.
            if !late {
                tokio::time::sleep(every).await;
            }
            late = self.renew_held().await;
            self.report_lapsed().await;
            self.announce().await;
        }
    }

    /// Remembers that this worker, alive, found its lease on `invocation`
    /// at `epoch` gone; [`Core::report_lapsed`] tells the store.
    fn lease_gone(&self, invocation: InvocationId, epoch: LeaseEpoch) {
        self.lapsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((invocation, epoch));
    }

    /// Reports the leases found gone: if the store, the network or this
    /// worker was away long enough for a lease to lapse and be taken over,
    /// that takeover followed no crash and must not count towards the
    /// crash-loop limit (it would dead-letter healthy tasks after a few
    /// database restarts). Kept for the next heartbeat if the store fails.
    async fn report_lapsed(&self) {
        let lapsed = std::mem::take(&mut *self.lapsed.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, (invocation, epoch)) in lapsed.iter().enumerate() {
            if let Err(e) = self
                .inner
                .backend
                .forgive_takeover(*invocation, *epoch)
                .await
            {
                tracing::warn!(worker = %self.id, error = %e, "could not report lapsed leases; will again");
                self.lapsed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&lapsed[i..]);
                return;
            }
        }
    }

    /// Renews every lease this worker holds. True if the renewal came back
    /// after the expiry it set (so the leases may have lapsed meanwhile).
    async fn renew_held(&self) -> bool {
        let held: Vec<(InvocationId, LeaseEpoch)> = self
            .lock_leases()
            .iter()
            .map(|(i, l)| (*i, l.epoch))
            .collect();
        if held.is_empty() {
            return false;
        }
        let now = self.now();
        let until = now.saturating_add(self.lease);
        match self
            .inner
            .backend
            .renew_leases(&self.id, &held, now, until)
            .await
        {
            Ok(lost) => {
                for inv in lost {
                    if let Some(l) = self.lock_leases().get(&inv) {
                        tracing::warn!(worker = %self.id, invocation = %inv, "lease lost");
                        l.lost.store(true, Ordering::SeqCst);
                    }
                    if let Some((_, epoch)) = held.iter().find(|(i, _)| *i == inv) {
                        self.lease_gone(inv, *epoch);
                    }
                    self.inner.hub.wake_invocation(inv);
                }
                let late = self.now() >= until;
                if !late {
                    *self.lock_renewed() = Some(until);
                }
                late
            }
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "lease renewal failed");
                false
            }
        }
    }

    /// True if the leases renewed last may have run out: the heartbeat fell
    /// behind (a stalled store or host, a jump of the clock).
    fn leases_may_have_lapsed(&self) -> bool {
        self.lock_renewed().is_some_and(|until| self.now() >= until)
    }

    fn lock_renewed(&self) -> std::sync::MutexGuard<'_, Option<Timestamp>> {
        self.renewed_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that a task this worker released becomes runnable at `at`.
    fn note_due(&self, at: Timestamp) {
        let mut due = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        *due = Some(due.map_or(at, |d| d.min(at)));
    }

    /// How long until the earliest remembered due time, if it comes within
    /// `horizon`; forgets it once it has come (the claim then finds the task).
    fn take_due_before(&self, horizon: Duration) -> Option<Duration> {
        let mut due = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        let at = (*due)?;
        let wait = at.millis().saturating_sub(self.now().millis());
        if wait <= 0 {
            *due = None;
            return Some(Duration::ZERO);
        }
        let wait = Duration::from_millis(wait as u64);
        (wait <= horizon).then_some(wait)
    }

    async fn cleanup_loop(self: Arc<Self>, every: Duration, retention: Duration) {
        loop {
            tokio::time::sleep(every.max(Duration::from_millis(1))).await;
            let before = Timestamp(
                self.now()
                    .millis()
                    .saturating_sub(retention.as_millis() as i64),
            );
            match self.inner.backend.cleanup(before, false).await {
                Ok(n) if n.executions > 0 => {
                    tracing::info!(worker = %self.id, executions = n.executions, tasks = n.tasks, events = n.events, "cleaned up finished executions");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "cleanup failed"),
            }
        }
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<InvocationId, LeaseState>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sticky(&self) -> std::sync::MutexGuard<'_, HashMap<InvocationId, Cached>> {
        self.sticky.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a held lease; returns the wake-up handle and the lost flag.
    fn hold(
        &self,
        invocation: InvocationId,
        execution: ExecutionId,
        epoch: LeaseEpoch,
    ) -> Residence {
        let lost = Arc::new(AtomicBool::new(false));
        let (notify, handoffs) = self
            .inner
            .hub
            .add_resident(invocation, execution, lost.clone());
        self.lock_leases().insert(
            invocation,
            LeaseState {
                epoch,
                lost: lost.clone(),
                notify: notify.clone(),
            },
        );
        Residence {
            notify,
            lost,
            handoffs,
            handoffs_open: true,
        }
    }

    /// Forgets a lease, unless the invocation was claimed again meanwhile
    /// (then the newer holder's registration stays).
    fn release(&self, invocation: InvocationId, epoch: LeaseEpoch) {
        let mut leases = self.lock_leases();
        if leases.get(&invocation).is_some_and(|l| l.epoch == epoch)
            && let Some(lease) = leases.remove(&invocation)
        {
            self.inner.hub.remove_resident(invocation, &lease.notify);
        }
    }

    /// Runs a claimed task; `journal` is its whole journal when the claim
    /// returned it (else it is read here).
    async fn start_claimed(
        self: Arc<Self>,
        task: ClaimedTask,
        journal: Option<Vec<JournalRow>>,
        slot: Option<Slot>,
    ) {
        let residence = self.hold(task.invocation, task.execution, task.epoch);
        let entry = self.inner.registry.get(&task.function).ok();
        let limit = entry
            .as_ref()
            .and_then(|e| e.retry_policy.as_ref())
            .map(|p| p.max_attempts.max(1))
            .unwrap_or(DEFAULT_CRASH_LIMIT);
        if task.attempts > limit {
            let reason = format!(
                "claimed {} times in a row without ever committing: its worker died each time (limit {limit})",
                task.attempts
            );
            tracing::error!(invocation = %task.invocation, %reason, "dead-lettering");
            let commit = bare_turn(
                task.invocation,
                task.epoch,
                self.now(),
                TaskDisposition::DeadLetter { reason },
            );
            match self.inner.backend.commit(vec![commit]).await {
                Ok(()) => self.inner.metrics.invocation_dead_lettered(&task.function),
                Err(e) => {
                    tracing::warn!(invocation = %task.invocation, error = %e, "could not dead-letter")
                }
            }
            self.release(task.invocation, task.epoch);
            return;
        }
        match self.load(task.invocation, journal).await {
            Ok((driver, parent)) => {
                let mut running = Running::new(
                    task.invocation,
                    task.execution,
                    task.epoch,
                    parent,
                    driver,
                    slot,
                    residence,
                );
                running.entry = entry;
                running.retries = task.retries;
                running.deadline = task.deadline;
                running.needs_checkpoint = true;
                self.drive(running, true).await;
            }
            Err(LoadError::Corrupt(report)) => {
                self.pause_unrunnable(task.invocation, task.execution, task.epoch, report)
                    .await;
            }
            Err(LoadError::Finished(report)) => {
                // A runnable task never has a stored end; running its code
                // would run a finished step again. Stop for a person.
                let report = format!("{report}, yet its task was runnable; it was not run again");
                self.pause_unrunnable(task.invocation, task.execution, task.epoch, report)
                    .await;
            }
            Err(LoadError::Store(e)) => {
                // The lease runs out and the task is claimed again later.
                tracing::warn!(invocation = %task.invocation, error = %e, "could not load journal");
                self.release(task.invocation, task.epoch);
            }
        }
    }

    /// A driver for `invocation`: the sticky one if the journal has not moved
    /// since it was parked, else a fresh replay of the stored journal.
    /// `journal`: the whole stored journal if the caller has it already
    /// (read after the lease was taken), else it is read here.
    async fn load(
        &self,
        invocation: InvocationId,
        journal: Option<Vec<JournalRow>>,
    ) -> Result<(Driver, Option<ParentLink>), LoadError> {
        let cached = self.lock_sticky().remove(&invocation);
        if let Some(cached) = cached {
            let moved = match &journal {
                Some(rows) => rows.len() != cached.driver.journal_len(),
                None => !self
                    .inner
                    .backend
                    .read_journal(invocation, Seq(cached.driver.journal_len() as u32))
                    .await
                    .map_err(LoadError::Store)?
                    .is_empty(),
            };
            if !moved {
                return Ok((cached.driver, cached.parent));
            }
        }
        let rows = match journal {
            Some(rows) => rows,
            None => self
                .inner
                .backend
                .read_journal(invocation, Seq(0))
                .await
                .map_err(LoadError::Store)?,
        };
        let mut events = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.seq.0 as usize != i {
                return Err(LoadError::Corrupt(format!(
                    "journal of invocation {invocation} has a gap: expected seq {i}, found {}",
                    row.seq
                )));
            }
            let event = Event::decode(&row.bytes).map_err(|e| {
                LoadError::Corrupt(format!(
                    "journal of invocation {invocation}, seq {}: {e}",
                    row.seq
                ))
            })?;
            events.push(event);
        }
        if let Some(last) = events.last().filter(|e| e.kind().is_terminal()) {
            return Err(LoadError::Finished(format!(
                "journal of invocation {invocation} already ends with `{}` at seq {}",
                last.kind(),
                events.len() - 1
            )));
        }
        let Some(Event::Started {
            function,
            args,
            parent,
            ..
        }) = events.first().cloned()
        else {
            return Err(LoadError::Corrupt(format!(
                "journal of invocation {invocation} does not start with a started event"
            )));
        };
        let entry = self
            .inner
            .registry
            .get(&function)
            .map_err(|e| LoadError::Corrupt(e.to_string()))?;
        let driver = self
            .new_driver(invocation, events, entry.invoke(args))
            .map_err(|e| LoadError::Corrupt(e.to_string()))?;
        Ok((driver, parent))
    }

    /// A driver running `future` against `journal`, with the executor's
    /// serializer.
    pub(super) fn new_driver(
        &self,
        invocation: InvocationId,
        journal: Vec<Event>,
        future: stent_replay::InvocationFuture,
    ) -> Result<Driver, DriverError> {
        let mut driver = Driver::new(invocation, journal, future)?;
        driver.set_serializer(self.inner.serializer);
        driver.set_limits(self.inner.limits);
        Ok(driver)
    }

    async fn drive(self: Arc<Self>, r: Running, check_remote: bool) {
        let span = tracing::info_span!(
            "stent.invocation",
            execution = %r.execution,
            invocation = %r.invocation,
            function = r.function(),
            worker = %self.id,
        );
        self.drive_in_span(r, check_remote).instrument(span).await
    }

    async fn drive_in_span(self: Arc<Self>, mut r: Running, check_remote: bool) {
        self.inner.metrics.invocation_started(r.function());
        let mut check = check_remote;
        loop {
            match self.idempotency_gate(&mut r).await {
                Ok(Gate::Run) => break,
                Ok(Gate::Done) => {
                    self.release(r.invocation, r.epoch);
                    return;
                }
                Err(TurnError::LeaseLost) => {
                    self.lease_gone(r.invocation, r.epoch);
                    self.release(r.invocation, r.epoch);
                    return;
                }
                Err(TurnError::Retry(message)) => {
                    tracing::warn!(invocation = %r.invocation, %message, "idempotency check failed");
                    if !self.recover_or_stop(&mut r).await {
                        self.release(r.invocation, r.epoch);
                        return;
                    }
                }
            }
        }
        loop {
            match self.turns(&mut r, check).await {
                Ok(Ended::Done) => break,
                Ok(Ended::Parked) => {
                    self.release(r.invocation, r.epoch);
                    let mut sticky = self.lock_sticky();
                    if sticky.len() >= STICKY_CAPACITY {
                        // Evict an arbitrary entry: it replays from its journal if claimed again.
                        if let Some(k) = sticky.keys().next().copied() {
                            sticky.remove(&k);
                        }
                    }
                    sticky.insert(
                        r.invocation,
                        Cached {
                            driver: r.driver,
                            parent: r.parent,
                        },
                    );
                    return;
                }
                Err(TurnError::LeaseLost) => {
                    tracing::warn!(invocation = %r.invocation, "lease lost; dropping the invocation");
                    self.lease_gone(r.invocation, r.epoch);
                    break;
                }
                Err(TurnError::Retry(message)) => {
                    tracing::warn!(invocation = %r.invocation, %message, "turn failed; re-reading the lease and the journal");
                    if !self.recover_or_stop(&mut r).await {
                        break;
                    }
                    check = true;
                }
            }
        }
        self.release(r.invocation, r.epoch);
    }

    /// After a storage fault: waits until the lease and the journal are
    /// read again ([`recovery`]) and replaces everything `r` held in
    /// memory with the replayed journal. False if `r` must stop instead.
    async fn recover_or_stop(&self, r: &mut Running) -> bool {
        let lost = r.residence.lost.clone();
        match self
            .recover(r.invocation, r.epoch, &lost, self.poll.min)
            .await
        {
            Ok(driver) => {
                // A kept end still holds if storage has exactly the journal
                // it was reached from (its commit did not land).
                r.unstored_end = r
                    .unstored_end
                    .take()
                    .filter(|end| driver.journal_len() == end.journal_len);
                r.driver = driver;
                r.consumed_inbox.clear();
                r.consumed_signals.clear();
                // Their children were told nothing was committed (the
                // senders drop) and deliver on their own.
                r.handed_off.clear();
                // Inline steps not stored are called again, except the
                // last one that returned here (`unstored`): its outcome is
                // reused when the replay schedules it again.
                r.deferred = None;
                r.first_status = None;
                r.cache_checked.clear();
                r.signals_fetched_before = Seq(0);
                true
            }
            Err(recovery::Stop::LeaseGone) => {
                tracing::info!(invocation = %r.invocation, "lease no longer held after the storage fault; stopping here");
                self.lease_gone(r.invocation, r.epoch);
                false
            }
            Err(recovery::Stop::Draining) => false,
            Err(recovery::Stop::Finished(report)) => {
                tracing::info!(invocation = %r.invocation, %report, "the invocation's end is stored; nothing more to run");
                false
            }
            Err(recovery::Stop::Corrupt(report)) => {
                self.pause_unrunnable(r.invocation, r.execution, r.epoch, report)
                    .await;
                false
            }
        }
    }

    /// Pauses the execution of an invocation whose stored journal cannot be
    /// run, with `report` for the person who resumes it.
    async fn pause_unrunnable(
        &self,
        invocation: InvocationId,
        execution: ExecutionId,
        epoch: LeaseEpoch,
        report: String,
    ) {
        tracing::error!(%invocation, %report, "journal cannot be run; pausing the execution");
        let commit = bare_turn(
            invocation,
            epoch,
            self.now(),
            TaskDisposition::Pause {
                report: PauseReport::text(format!("execution {execution}: {report}")).to_stored(),
            },
        );
        if let Err(e) = self.inner.backend.commit(vec![commit]).await {
            tracing::warn!(%invocation, error = %e, "could not pause");
        }
        self.inner.hub.execution_finished(execution);
        self.release(invocation, epoch);
    }

    /// Runs turns until the invocation finishes, parks, or stops.
    async fn turns(
        self: &Arc<Self>,
        r: &mut Running,
        mut check_remote: bool,
    ) -> Result<Ended, TurnError> {
        let mut queue: VecDeque<(Option<Event>, Source)> = VecDeque::new();
        let mut backoff = self.poll.min;
        loop {
            if r.lost() {
                return Err(TurnError::LeaseLost);
            }
            if r.deadline.is_some_and(|d| d <= self.now()) {
                self.time_out(r.execution, r.deadline).await;
                return Ok(Ended::Done);
            }
            if let Some(end) = r.unstored_end.take() {
                return self.finish_keeping(r, end.out, true).await;
            }
            let status = match r.first_status.take() {
                Some(status) => status,
                None => {
                    r.driver.set_now(self.now());
                    let waker = current_waker().await;
                    r.driver
                        .advance(&mut std::task::Context::from_waker(&waker))
                }
            };
            let behind = match status {
                Status::Finished(out) => return self.finish_keeping(r, out, false).await,
                Status::Stopped(DriverError::Aborted { message, .. }) => {
                    return self
                        .finish_keeping(r, Err(Failure::Aborted { message }), true)
                        .await;
                }
                Status::Stopped(other) => {
                    let report = report_of_stop(r, &other);
                    self.pause(r, report).await?;
                    return Ok(Ended::Done);
                }
                Status::Blocked => false,
                Status::Behind => true,
            };
            if !behind {
                while let Ok(h) = r.residence.handoffs.try_recv() {
                    queue.push_back((Some(h.resolution.clone()), Source::Handoff(Box::new(h))));
                }
                if let Some((event, source)) = queue.pop_front() {
                    // The code may have stopped waiting for it meanwhile (a
                    // lost race): then it is not journaled.
                    let waited = event
                        .as_ref()
                        .and_then(Event::resolves)
                        .and_then(|seq| r.driver.outstanding_at(seq));
                    // A signal whose payload the waiting code cannot decode
                    // (an operator's typo) is set aside, never journaled,
                    // and the execution paused until a good one is sent.
                    if let (
                        Source::Signal(id),
                        Some(Outstanding::Signal { name }),
                        Some(Event::SignalReceived { awaited, payload }),
                    ) = (&source, &waited, &event)
                        && let Err((why, type_name)) = r.driver.check_signal(*awaited, payload)
                    {
                        let text = format!(
                            "execution {}: signal {name:?} (id {}) does not decode as \
                             {type_name}, the type the code waits for at seq {awaited}: {why}. It \
                             was set aside, not delivered. Send a signal {name:?} with a payload \
                             of that type, then resume the execution",
                            r.execution, id.0
                        );
                        let report = PauseReport::signal_set_aside(
                            text,
                            SetAsideSignal {
                                id: id.0,
                                name: name.clone(),
                                invocation: r.invocation,
                                awaited: *awaited,
                                expected_type: type_name.to_string(),
                                why,
                            },
                        );
                        self.pause_setting_aside(r, report, Some(*id)).await?;
                        return Ok(Ended::Done);
                    }
                    match source {
                        // Consumed either way: a stale delivery is dropped.
                        Source::Inbox(id) => r.consumed_inbox.push(id),
                        // Left for a later wait if this one is gone.
                        Source::Signal(id) if waited.is_some() => r.consumed_signals.push(id),
                        Source::Signal(_) | Source::Timer => {}
                        Source::Handoff(h) => {
                            if !matches!(waited, Some(Outstanding::Call { .. })) {
                                // Not ours to journal: the child delivers on its own.
                                let _ = h.done.send(Err("no outstanding call".into()));
                                continue;
                            }
                            r.handed_off.push(*h);
                        }
                    }
                    if let Some(event) = event
                        && waited.is_some()
                        && let Err(e) = r.driver.resolve(event)
                    {
                        let report = report_of_stop(r, &e);
                        self.pause(r, report).await?;
                        return Ok(Ended::Done);
                    }
                    continue;
                }
                let waiting = Waiting {
                    invocation: r.invocation,
                    execution: r.execution,
                    outstanding: r.driver.outstanding(),
                    fresh_calls: r
                        .driver
                        .pending_new_calls()
                        .into_iter()
                        .map(|(seq, _, _)| seq)
                        .collect(),
                    signals_fetched_before: r.signals_fetched_before,
                    consumed_inbox: &r.consumed_inbox,
                    consumed_signals: &r.consumed_signals,
                };
                let found = self.collect(waiting, check_remote).await?;
                check_remote = false;
                r.signals_fetched_before = r.driver.next_seq();
                if !found.is_empty() {
                    queue.extend(found);
                    continue;
                }
            }

            // Calls of cached functions may be answered from the cache.
            if !behind && self.answer_from_cache(r).await? {
                continue;
            }

            // Nothing more to apply: store the turn, then wait.
            let now = self.now();
            let outstanding = r.driver.outstanding();
            // Pending with no durable effect outstanding: the code awaits
            // real I/O. It keeps its slot and stays, even while draining.
            let io_wait = behind || outstanding.is_empty();
            if !io_wait {
                r.slot = None;
            }
            let has_calls = outstanding
                .iter()
                .any(|(_, o)| matches!(o, Outstanding::Call { .. }));
            let next_timer = outstanding
                .iter()
                .filter_map(|(_, o)| match o {
                    Outstanding::Timer { fire_at } => Some(*fire_at),
                    _ => None,
                })
                .min();
            let timer_is_near = next_timer.is_some_and(|t| {
                t.millis().saturating_sub(now.millis()) <= self.sticky_timer.as_millis() as i64
            });
            let stay = io_wait || (!self.draining() && (has_calls || timer_is_near));
            let new_events = r.driver.take_new_events();
            let must_commit = !new_events.is_empty()
                || !r.consumed_inbox.is_empty()
                || !r.consumed_signals.is_empty()
                || !r.handed_off.is_empty()
                || (r.needs_checkpoint && !io_wait)
                || r.deferred.is_some()
                || !stay;
            if must_commit {
                let (spawn, mut local) = self.plan_children(r, &new_events, now)?;
                let has_remote_children = spawn.iter().any(|s| s.lease.is_none());
                let one_child = spawn.len() == 1;
                let disposition = if stay {
                    TaskDisposition::Hold {
                        lease_until: now.saturating_add(self.lease),
                    }
                } else {
                    // Wake up at the deadline too, to time the execution out.
                    let run_at = match (next_timer, r.deadline) {
                        (Some(t), Some(d)) => Some(t.min(d)),
                        (t, d) => t.or(d),
                    };
                    if let Some(t) = run_at {
                        self.note_due(t);
                    }
                    TaskDisposition::Park { run_at }
                };
                let commit = TurnCommit {
                    invocation: r.invocation,
                    epoch: r.epoch,
                    now,
                    events: to_new_events(new_events)?,
                    spawn,
                    consumed_inbox: std::mem::take(&mut r.consumed_inbox),
                    consumed_signals: std::mem::take(&mut r.consumed_signals),
                    cache_put: Vec::new(),
                    idempotency_done: Vec::new(),
                    idempotency_released: Vec::new(),
                    disposition,
                };
                // A lone step started here may return in its first poll;
                // its end then rides along with a commit of this invocation
                // instead of costing one of its own (see `inline`).
                let lone_step = if stay && one_child && local.len() == 1 {
                    local.pop()
                } else {
                    None
                };
                // Polled with this task's waker: if the step waits, its
                // wake-ups reach this task while the commit is in flight.
                let waker = current_waker().await;
                let mut waiting_step = None;
                // Before this turn is stored only if it stores no earlier
                // step's result (one kept in memory, or handed over by a
                // child): a step never starts before every result before
                // it is stored, so a crash never runs a step again once a
                // later one has begun.
                let results_in_memory = r.deferred.is_some() || !r.handed_off.is_empty();
                let lone_step = match lone_step {
                    Some(step) if !results_in_memory => {
                        match self.run_or_recall(r, step, now, &waker)? {
                            Inline::Returned(step) => {
                                if !self.keep_returned(r, Some(commit), step).await? {
                                    return Ok(Ended::Done);
                                }
                                continue;
                            }
                            Inline::Pending(step) => {
                                waiting_step = Some(step);
                                None
                            }
                        }
                    }
                    other => other,
                };
                self.commit_polling(r, commit, waiting_step.as_mut())
                    .await?;
                r.needs_checkpoint = false;
                local.extend(waiting_step);
                self.start_children(local);
                // Results were waiting in memory: the step runs now that
                // they and the turn scheduling it are stored.
                if let Some(step) = lone_step {
                    match self.run_or_recall(r, step, self.now(), &waker)? {
                        Inline::Returned(step) => {
                            if !self.keep_returned(r, None, step).await? {
                                return Ok(Ended::Done);
                            }
                            continue;
                        }
                        Inline::Pending(step) => self.start_children(vec![step]),
                    }
                }
                if has_remote_children || !stay {
                    self.inner.hub.work.notify_waiters();
                }
                if !stay {
                    return Ok(Ended::Parked);
                }
            }
            let wait = match next_timer {
                Some(t) => {
                    Duration::from_millis(t.millis().saturating_sub(now.millis()).max(0) as u64)
                        .min(backoff)
                }
                None => backoff,
            };
            let mut drain = self.drain.clone();
            let woken = r.driver.wake_flag();
            let until_deadline = r.deadline.map(|d| {
                Duration::from_millis(d.millis().saturating_sub(now.millis()).max(0) as u64)
            });
            // Woken by a hand-off, the answer is in hand: storage is read
            // again at the next other wake-up or poll, not after every
            // in-process step (that read was a round trip per step).
            let mut read_storage = true;
            tokio::select! {
                _ = tokio::time::sleep(until_deadline.unwrap_or_default()), if until_deadline.is_some() => {}
                _ = r.residence.notify.notified() => backoff = self.poll.min,
                h = r.residence.handoffs.recv(), if r.residence.handoffs_open => {
                    match h {
                        Some(h) => {
                            queue.push_back((Some(h.resolution.clone()), Source::Handoff(Box::new(h))));
                            read_storage = false;
                        }
                        // Another claim of this invocation replaced our
                        // registration; children now deliver through storage.
                        None => r.residence.handoffs_open = false,
                    }
                    backoff = self.poll.min;
                }
                _ = tokio::time::sleep(wait) => backoff = self.poll.next(backoff),
                _ = drain.wait_for(|d| *d), if !io_wait => {}
                _ = poll_fn(|_| if woken.is_set() { Poll::Ready(()) } else { Poll::Pending }) => {}
            }
            check_remote = read_storage;
        }
    }

    /// Answers available now: deliveries, signals, due timers.
    async fn collect(
        &self,
        r: Waiting<'_>,
        check_remote: bool,
    ) -> Result<Vec<(Option<Event>, Source)>, TurnError> {
        let outstanding = r.outstanding;
        let mut found = Vec::new();
        // A wait created since signals were last fetched may already have a
        // signal waiting for it (sent before the wait existed).
        let new_signal_wait = outstanding.iter().any(|(s, o)| {
            matches!(o, Outstanding::Signal { .. }) && *s >= r.signals_fetched_before
        });
        if check_remote || new_signal_wait {
            let calls: HashSet<Seq> = outstanding
                .iter()
                .filter(|(_, o)| matches!(o, Outstanding::Call { .. }))
                .map(|(s, _)| *s)
                .collect();
            // Only calls committed earlier can have results in the inbox
            // (a first turn's calls never do: no read for them).
            let delivered_possible = calls.iter().any(|s| !r.fresh_calls.contains(s));
            if check_remote && delivered_possible {
                for item in self.inner.backend.inbox(r.invocation).await? {
                    if r.consumed_inbox.contains(&item.id) {
                        continue;
                    }
                    let event = Event::decode(&item.event)
                        .ok()
                        .filter(|e| e.resolves().is_some_and(|s| calls.contains(&s)));
                    if event.is_none() {
                        tracing::warn!(invocation = %r.invocation, inbox = item.id.0, "dropping a delivery that answers no outstanding call");
                    }
                    found.push((event, Source::Inbox(item.id)));
                }
            }
            let waits: Vec<(Seq, String)> = outstanding
                .iter()
                .filter_map(|(s, o)| match o {
                    Outstanding::Signal { name } => Some((*s, name.clone())),
                    _ => None,
                })
                .collect();
            if !waits.is_empty() {
                let mut names: Vec<String> = waits.iter().map(|(_, n)| n.clone()).collect();
                names.sort();
                names.dedup();
                let signals = self
                    .inner
                    .backend
                    .pending_signals(r.execution, &names)
                    .await?;
                let mut used: HashSet<SignalId> = r.consumed_signals.iter().copied().collect();
                for (seq, name) in waits {
                    if let Some(sig) = signals
                        .iter()
                        .find(|s| s.name == name && !used.contains(&s.id))
                    {
                        used.insert(sig.id);
                        found.push((
                            Some(Event::SignalReceived {
                                awaited: seq,
                                payload: Payload::from_bytes(sig.payload.clone()),
                            }),
                            Source::Signal(sig.id),
                        ));
                    }
                }
            }
        }
        let now = self.now();
        for (seq, o) in &outstanding {
            if let Outstanding::Timer { fire_at } = o
                && *fire_at <= now
            {
                found.push((Some(Event::TimerFired { started: *seq }), Source::Timer));
            }
        }
        Ok(found)
    }

    /// Child invocations for new `CallScheduled` events; those this worker can
    /// run right away are leased to it at creation.
    fn plan_children(
        self: &Arc<Self>,
        r: &Running,
        events: &[(Seq, Event)],
        now: Timestamp,
    ) -> Result<(Vec<NewInvocation>, Vec<LocalStart>), TurnError> {
        let mut spawn = Vec::new();
        let mut local = Vec::new();
        for (seq, event) in events {
            let Event::CallScheduled {
                function,
                version,
                args,
                child,
                ..
            } = event
            else {
                continue;
            };
            let entry = self.inner.registry.get(function).ok();
            let routing = entry
                .as_ref()
                .map(|e| e.routing.clone())
                .unwrap_or_default();
            let parent = ParentLink {
                invocation: r.invocation,
                seq: *seq,
            };
            let started = Event::Started {
                function: function.clone(),
                version: version.clone(),
                args: args.clone(),
                parent: Some(parent),
                forked_from: None,
            };
            let started_event = started
                .encode()
                .map_err(|e| TurnError::Retry(e.to_string()))?;
            // A call this worker cannot run: warn once if none can.
            if entry.is_none() || !self.serves(&routing) {
                self.check_served(function, &routing);
            }
            // Limited functions go through a claim, which enforces the limit.
            let slot = match &entry {
                Some(e)
                    if e.max_concurrent.is_none() && !self.draining() && self.serves(&routing) =>
                {
                    self.try_slot()
                }
                _ => None,
            };
            let lease = slot.as_ref().map(|_| LeaseGrant {
                worker: self.id.clone(),
                until: now.saturating_add(self.lease),
            });
            spawn.push(NewInvocation {
                invocation: *child,
                execution: r.execution,
                function: function.clone(),
                routing,
                run_at: now,
                started_event,
                lease,
            });
            if let (Some(slot), Some(entry)) = (slot, entry) {
                local.push(LocalStart {
                    invocation: *child,
                    execution: r.execution,
                    entry,
                    args: args.clone(),
                    started,
                    parent: Some(parent),
                    deadline: r.deadline,
                    lease_until: now.saturating_add(self.lease),
                    slot,
                    prepared: None,
                });
            }
        }
        Ok((spawn, local))
    }

    fn start_children(self: &Arc<Self>, children: Vec<LocalStart>) {
        for c in children {
            if self.now() >= c.lease_until {
                // The commit that created it took longer than a lease (an
                // overloaded host or database): another worker may already
                // have claimed it, so its body must not start here. It is
                // claimed like any expired lease.
                tracing::warn!(invocation = %c.invocation, "lease ran out before the child could start; leaving it to a claim");
                continue;
            }
            let (driver, first_status) = match c.prepared {
                Some(prepared) => (prepared.driver, prepared.status),
                None => {
                    match self.new_driver(c.invocation, vec![c.started], c.entry.invoke(c.args)) {
                        Ok(d) => (d, None),
                        Err(e) => {
                            // Cannot happen for a journal we just built; the lease
                            // runs out and another claim replays it from storage.
                            tracing::error!(invocation = %c.invocation, error = %e, "could not start child");
                            continue;
                        }
                    }
                }
            };
            let residence = self.hold(c.invocation, c.execution, LeaseEpoch(1));
            let mut running = Running::new(
                c.invocation,
                c.execution,
                LeaseEpoch(1),
                c.parent,
                driver,
                Some(c.slot),
                residence,
            );
            running.deadline = c.deadline;
            running.entry = Some(c.entry);
            running.first_status = first_status;
            self.spawn_tracked(self.clone().drive(running, false));
        }
    }

    /// [`Core::finish`], keeping `out` in `r` if the commit fails and would
    /// have stored nothing of the code but its end (a step's body that
    /// returned): the code is not run again after the fault, its end is
    /// committed again. The journal read after the fault decides: if the
    /// failed commit landed, it ends with the end (nothing more runs); if
    /// it is as long as before, the kept end is still the code's outcome;
    /// anything else and the code replays ([`Core::recover_or_stop`]).
    /// `append_terminal`: the driver's journal does not hold the end.
    async fn finish_keeping(
        self: &Arc<Self>,
        r: &mut Running,
        out: std::result::Result<Payload, Failure>,
        append_terminal: bool,
    ) -> Result<Ended, TurnError> {
        let only_the_end = r.driver.new_events_len() == usize::from(!append_terminal)
            && r.handed_off.is_empty()
            && r.deferred.is_none()
            && r.consumed_inbox.is_empty()
            && r.consumed_signals.is_empty();
        let kept = only_the_end.then(|| UnstoredEnd {
            journal_len: r.driver.journal_len() - usize::from(!append_terminal),
            out: out.clone(),
        });
        match self.finish(r, out, append_terminal).await {
            Ok(()) => Ok(Ended::Done),
            Err(TurnError::Retry(message)) => {
                r.unstored_end = kept;
                Err(TurnError::Retry(message))
            }
            Err(e) => Err(e),
        }
    }

    async fn finish(
        self: &Arc<Self>,
        r: &mut Running,
        out: std::result::Result<Payload, Failure>,
        append_terminal: bool,
    ) -> Result<(), TurnError> {
        let now = self.now();
        if let Err(failure) = &out
            && self
                .retry_or_dead_letter(r, failure, append_terminal)
                .await?
        {
            return Ok(());
        }
        let mut events = r.driver.take_new_events();
        let terminal = match &out {
            Ok(value) => Event::Completed {
                value: value.clone(),
            },
            Err(failure) => Event::Failed {
                failure: failure.clone(),
            },
        };
        if append_terminal {
            events.push((Seq(r.driver.journal_len() as u32), terminal.clone()));
        }
        let (spawn, local) = self.plan_children(r, &events, now)?;
        let encode = |e: &Event| e.encode().map_err(|e| TurnError::Retry(e.to_string()));
        let deliver = match r.parent {
            Some(p) => Some(Delivery {
                parent: p.invocation,
                event: encode(&resolution(p.seq, &out))?,
            }),
            None => None,
        };
        let is_root = r.invocation == r.execution.root_invocation();
        let execution = if is_root {
            Some(ExecutionOutcome {
                status: if out.is_ok() {
                    ExecutionStatus::Completed
                } else {
                    ExecutionStatus::Failed
                },
                terminal_event: encode(&terminal)?,
            })
        } else {
            None
        };
        let ended = execution.clone();
        let mut commit = TurnCommit {
            invocation: r.invocation,
            epoch: r.epoch,
            now,
            events: to_new_events(events)?,
            spawn,
            consumed_inbox: std::mem::take(&mut r.consumed_inbox),
            consumed_signals: std::mem::take(&mut r.consumed_signals),
            cache_put: cached_result(r.entry.as_deref(), &r.driver.started_event(), &out),
            idempotency_done: match (&out, &r.idempotency_key) {
                (Ok(value), Some(key)) => vec![(key.clone(), value.as_bytes().to_vec())],
                _ => Vec::new(),
            },
            idempotency_released: match (&out, &r.idempotency_key) {
                (Err(_), Some(key)) => vec![key.clone()],
                _ => Vec::new(),
            },
            disposition: TaskDisposition::Finish {
                deliver: None,
                execution,
            },
        };
        r.slot = None;
        let handed_off = match (&deliver, r.handed_off.is_empty() && local.is_empty()) {
            // A plain finished child with a resident parent here: hand the
            // result over, so parent and child commit in one transaction.
            (Some(d), true) => {
                let turns = merged_turns(r.deferred.clone(), commit.clone());
                let handed_off = self.hand_off(d.parent, turns, &out, r.parent).await;
                if handed_off {
                    r.deferred = None;
                    r.unstored = None;
                }
                handed_off
            }
            _ => false,
        };
        if !handed_off {
            if let TaskDisposition::Finish { deliver: slot, .. } = &mut commit.disposition {
                *slot = deliver.clone();
            }
            self.commit_with_handoffs(r, commit).await?;
            self.start_children(local);
            // A delivery to a parent resident here wakes it; one to a parent
            // elsewhere may have made its task ready. A root's end makes no
            // task runnable (its waiters are woken below).
            let parent_is_here = deliver
                .as_ref()
                .is_some_and(|d| self.inner.hub.wake_invocation(d.parent));
            if deliver.is_some() && !parent_is_here {
                self.inner.hub.work.notify_waiters();
            }
        }
        if r.entry.as_ref().is_some_and(|e| e.max_concurrent.is_some()) {
            // A slot of a limited function is free: a waiting task may be claimable.
            self.inner.hub.work.notify_waiters();
        }
        let took = r.started.elapsed();
        match &out {
            Ok(_) => self.inner.metrics.invocation_completed(r.function(), took),
            Err(_) => self.inner.metrics.invocation_failed(r.function(), took),
        }
        match ended {
            Some(outcome) => self.inner.hub.execution_ended_here(r.execution, outcome),
            None if is_root => self.inner.hub.execution_finished(r.execution),
            None => {}
        }
        Ok(())
    }

    /// After a failed attempt: parks the task for a retry if its policy
    /// allows one, or dead-letters it if the failure is not a result the
    /// caller can handle (a panic). True if it did either.
    async fn retry_or_dead_letter(
        self: &Arc<Self>,
        r: &mut Running,
        failure: &Failure,
        terminal_is_extra: bool,
    ) -> Result<bool, TurnError> {
        let now = self.now();
        let policy = r.entry.as_ref().and_then(|e| e.retry_policy.clone());
        let attempt = r.retries + 1;
        let retry = policy
            .as_ref()
            .is_some_and(|p| attempt < p.max_attempts && p.retries(failure));
        let disposition = if retry {
            let policy = policy
                .as_ref()
                .map(|p| p.delay(attempt, r.invocation.as_uuid().as_bytes()));
            let run_at = now.saturating_add(policy.unwrap_or_default());
            self.note_due(run_at);
            self.inner.hub.work_due(run_at);
            TaskDisposition::Retry {
                run_at,
                error: cut_failure(&failure.to_string()),
            }
        } else if let Failure::Panic { message } = failure {
            TaskDisposition::DeadLetter {
                reason: format!("panicked on attempt {attempt}: {message}"),
            }
        } else {
            return Ok(false);
        };
        tracing::warn!(invocation = %r.invocation, attempt, %failure, ?disposition, "attempt failed");
        let mut events = r.driver.take_new_events();
        // The failed attempt's terminal event is not journaled: the
        // invocation goes on (on retry) or waits (dead letter).
        if !terminal_is_extra && events.last().is_some_and(|(_, e)| e.kind().is_terminal()) {
            events.pop();
        }
        let (spawn, local) = self.plan_children(r, &events, now)?;
        let commit = TurnCommit {
            events: to_new_events(events)?,
            spawn,
            consumed_inbox: std::mem::take(&mut r.consumed_inbox),
            consumed_signals: std::mem::take(&mut r.consumed_signals),
            ..bare_turn(r.invocation, r.epoch, now, disposition)
        };
        r.slot = None;
        self.commit_with_handoffs(r, commit).await?;
        self.start_children(local);
        self.inner.hub.work.notify_waiters();
        if retry {
            self.inner.metrics.invocation_retried(r.function());
        } else {
            self.inner.metrics.invocation_dead_lettered(r.function());
        }
        Ok(true)
    }

    /// Answers calls of `cached` functions scheduled in this turn from the
    /// cache. True if any was answered (the code can go on).
    async fn answer_from_cache(&self, r: &mut Running) -> Result<bool, TurnError> {
        let mut answered = false;
        for (seq, function, key) in r.driver.pending_new_calls() {
            if r.cache_checked.contains(&seq) {
                continue;
            }
            r.cache_checked.insert(seq);
            if !self.inner.registry.get(&function).is_ok_and(|e| e.cached) {
                continue;
            }
            if let Some(value) = self.inner.backend.cache_get(key).await? {
                answered |= r.driver.answer_from_cache(seq, Payload::from_bytes(value));
            }
        }
        Ok(answered)
    }

    /// Takes (or finds) the idempotency key of an `idempotent` invocation
    /// before its body runs.
    async fn idempotency_gate(self: &Arc<Self>, r: &mut Running) -> Result<Gate, TurnError> {
        let Some(key_of) = r.entry.as_ref().and_then(|e| e.idempotency_key) else {
            return Ok(Gate::Run);
        };
        let Event::Started {
            function,
            version,
            args,
            ..
        } = r.driver.started_event()
        else {
            return Ok(Gate::Run);
        };
        let key = match key_of(&function, version.as_deref(), &args) {
            Ok(k) => k,
            Err(e) => {
                self.finish(
                    r,
                    Err(Failure::Aborted {
                        message: format!("idempotency key of {function}: {e}"),
                    }),
                    true,
                )
                .await?;
                return Ok(Gate::Done);
            }
        };
        match self
            .inner
            .backend
            .begin_idempotent(&key, r.invocation)
            .await?
        {
            IdempotencyBegin::Owner => {
                r.driver.set_idempotency_key(key.clone());
                r.idempotency_key = Some(key);
                Ok(Gate::Run)
            }
            IdempotencyBegin::Done(value) => {
                // Ran before, in this or another execution: the same result,
                // without running the body again.
                self.finish(r, Ok(Payload::from_bytes(value)), true).await?;
                Ok(Gate::Done)
            }
            IdempotencyBegin::Running { owner } => {
                tracing::debug!(invocation = %r.invocation, %owner, %key, "waiting for the first run of an idempotent call");
                let now = self.now();
                let commit = bare_turn(
                    r.invocation,
                    r.epoch,
                    now,
                    TaskDisposition::Park {
                        run_at: Some(now.saturating_add(self.poll.min)),
                    },
                );
                self.inner.backend.commit(vec![commit]).await?;
                self.inner.hub.work.notify_waiters();
                Ok(Gate::Done)
            }
        }
    }

    /// The execution ran past its deadline: end it as timed out.
    async fn time_out(&self, execution: ExecutionId, deadline: Option<Timestamp>) {
        let terminal = Event::TimedOut { deadline }.encode().unwrap_or_default();
        match self
            .inner
            .backend
            .end_execution(execution, ExecutionStatus::TimedOut, terminal, self.now())
            .await
        {
            Ok(_) => {
                self.inner.hub.stop_execution(execution);
                self.inner.hub.execution_finished(execution);
            }
            Err(e) => tracing::warn!(%execution, error = %e, "could not time out"),
        }
    }

    /// Offers this finished child's final turn and result to its parent
    /// resident in this process. True once the parent committed both.
    async fn hand_off(
        &self,
        parent: InvocationId,
        commits: Vec<TurnCommit>,
        out: &std::result::Result<Payload, Failure>,
        link: Option<ParentLink>,
    ) -> bool {
        let Some(link) = link else { return false };
        let (done, answer) = oneshot::channel();
        let handoff = Handoff {
            commits,
            resolution: resolution(link.seq, out),
            done,
        };
        if !self.inner.hub.hand_off(parent, handoff) {
            return false;
        }
        matches!(answer.await, Ok(Ok(())))
    }

    /// Commits `own` together with the turns of children handed off to `r`
    /// and its deferred turns, in one transaction, and tells those children
    /// how it went.
    async fn commit_with_handoffs(
        &self,
        r: &mut Running,
        own: TurnCommit,
    ) -> Result<(), TurnError> {
        let handed_off = std::mem::take(&mut r.handed_off);
        let mut turns = Vec::with_capacity(handed_off.len() + 2);
        let mut answers = Vec::with_capacity(handed_off.len());
        for h in handed_off {
            turns.extend(h.commits);
            answers.push(h.done);
        }
        turns.extend(merged_turns(r.deferred.take(), own));
        let result = self.inner.backend.commit(turns).await;
        if result.is_ok() {
            r.unstored = None;
        }
        for answer in answers {
            let _ = answer.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        match result {
            Ok(()) => Ok(()),
            // A handed-off child lost its lease (it was taken over): our own
            // lease is fine, but the results we applied in memory are not
            // stored. Reload from the journal; the child's new owner delivers.
            Err(StoreError::LeaseLost { invocation, .. }) if invocation != r.invocation => {
                Err(TurnError::Retry(format!(
                    "handed-off child {invocation} lost its lease; reloading"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn pause(
        self: &Arc<Self>,
        r: &mut Running,
        report: PauseReport,
    ) -> Result<(), TurnError> {
        self.pause_setting_aside(r, report, None).await
    }

    /// Pauses the execution of `r` with `report`; the signal `set_aside`,
    /// if any, is marked consumed without being journaled (it does not fit
    /// the wait it was meant for).
    async fn pause_setting_aside(
        self: &Arc<Self>,
        r: &mut Running,
        report: PauseReport,
        set_aside: Option<SignalId>,
    ) -> Result<(), TurnError> {
        tracing::error!(execution = %r.execution, invocation = %r.invocation, report = %report.text, "pausing execution");
        let commit = TurnCommit {
            consumed_signals: set_aside.into_iter().collect(),
            ..bare_turn(
                r.invocation,
                r.epoch,
                self.now(),
                TaskDisposition::Pause {
                    report: report.to_stored(),
                },
            )
        };
        // Children handed off to a diverged driver deliver on their own (their
        // senders drop), so their results wait in the inbox for the resume.
        // Deferred turns are dropped: a resume calls their steps again.
        r.handed_off.clear();
        r.deferred = None;
        self.inner.backend.commit(vec![commit]).await?;
        self.inner.hub.execution_finished(r.execution);
        Ok(())
    }
}

/// Longest failure text kept on a task row for operators: enough for a
/// message and a short backtrace, small enough that a failure loop cannot
/// grow the row without bound.
const FAILURE_TEXT_LIMIT: usize = 4096;

/// A failure's text cut to [`FAILURE_TEXT_LIMIT`] bytes on a character
/// boundary, marked when cut.
fn cut_failure(text: &str) -> String {
    if text.len() <= FAILURE_TEXT_LIMIT {
        return text.to_string();
    }
    let mut end = FAILURE_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// The pause report for the code of `r` that stopped with `error`.
fn report_of_stop(r: &Running, error: &DriverError) -> PauseReport {
    let function = match r.driver.started_event() {
        Event::Started { function, .. } => function,
        _ => String::new(),
    };
    crate::debugger::pause::report_of_stop(r.execution, &function, error, &r.driver.journal())
}

/// The call key of an invocation, from its `Started` event.
fn call_key_of(started: &Event) -> Option<CallKey> {
    match started {
        Event::Started {
            function,
            version,
            args,
            ..
        } => Some(CallKey::new(function, version.as_deref(), args)),
        _ => None,
    }
}

/// The cache entry a finished invocation of a `cached` function leaves.
fn cached_result(
    entry: Option<&FunctionEntry>,
    started: &Event,
    out: &std::result::Result<Payload, Failure>,
) -> Vec<(CallKey, Vec<u8>)> {
    match (out, entry.is_some_and(|e| e.cached)) {
        (Ok(value), true) => call_key_of(started)
            .map(|k| vec![(k, value.as_bytes().to_vec())])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The event that answers the parent's call at `scheduled` with `out`.
fn resolution(scheduled: Seq, out: &std::result::Result<Payload, Failure>) -> Event {
    match out {
        Ok(value) => Event::CallCompleted {
            scheduled,
            value: value.clone(),
        },
        Err(failure) => Event::CallFailed {
            scheduled,
            failure: failure.clone(),
        },
    }
}

/// `own` with the deferred turns that must be stored with it: the deferred
/// turn of the same invocation folded in, then the inline steps' ends.
fn merged_turns(deferred: Option<Deferred>, own: TurnCommit) -> Vec<TurnCommit> {
    let Some(deferred) = deferred else {
        return vec![own];
    };
    let mut turns = Vec::with_capacity(deferred.steps.len() + 2);
    match deferred.own {
        Some(mut earlier) => match earlier.absorb(own) {
            Ok(()) => turns.push(earlier),
            // Not a lease hold: stored as two turns (the store refuses the
            // second if the first released the lease, and the turn reloads).
            Err(own) => {
                turns.push(earlier);
                turns.push(*own);
            }
        },
        None => turns.push(own),
    }
    turns.extend(deferred.steps);
    turns
}

/// A turn that writes nothing but its disposition.
fn bare_turn(
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

/// The waker of the task this is awaited in.
async fn current_waker() -> std::task::Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

fn to_new_events(events: Vec<(Seq, Event)>) -> Result<Vec<NewEvent>, TurnError> {
    events
        .into_iter()
        .map(|(seq, event)| {
            Ok(NewEvent {
                seq,
                kind: event.kind(),
                call_key: event.call_key(),
                bytes: event
                    .encode()
                    .map_err(|e| TurnError::Retry(e.to_string()))?,
            })
        })
        .collect()
}

impl LocalClaimer for Core {
    fn reserve(
        self: Arc<Self>,
        function: &str,
        routing: &Routing,
        now: Timestamp,
    ) -> Option<Reservation> {
        if self.draining() || !self.functions.iter().any(|f| f == function) || !self.serves(routing)
        {
            return None;
        }
        let entry = self.inner.registry.get(function).ok()?;
        let slot = self.try_slot()?;
        let grant = LeaseGrant {
            worker: self.id.clone(),
            until: now.saturating_add(self.lease),
        };
        let lease_until = grant.until;
        let core = self.clone();
        Some(Reservation {
            grant,
            start: Box::new(move |execution: ExecutionId, started: Event, deadline| {
                let Event::Started { ref args, .. } = started else {
                    return;
                };
                let args = args.clone();
                core.start_children(vec![LocalStart {
                    invocation: execution.root_invocation(),
                    execution,
                    entry,
                    args,
                    started,
                    parent: None,
                    deadline,
                    lease_until,
                    slot,
                    prepared: None,
                }]);
            }),
        })
    }
}
