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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stent_journal::event::{Event, ParentLink};
use stent_journal::store::{
    InboxId, NewEvent, NewInvocation, Routing, SignalId, StoreError, TaskDisposition, TurnCommit,
};
use stent_journal::{
    ExecutionId, Failure, InvocationId, LeaseEpoch, Payload, Seq, Timestamp, WorkerId,
};
use stent_replay::{Driver, Outstanding, Status};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::error::Result;
use crate::executor::{Inner, PollSettings};
use crate::hub::Handoff;
use crate::registry::FunctionEntry;

mod answer;
mod builder;
mod children;
mod claim;
mod gates;
mod heartbeat;
mod inline;
mod outcome;
mod presence;
mod recovery;
mod turn_end;
mod turn_loop;
mod turns;

pub use builder::WorkerBuilder;
use children::merged_turns;
use gates::call_key_of;
use inline::{Deferred, Inline, Prepared, Returned};
use outcome::{cached_result, report_of_stop, resolution};

/// Parked drivers kept in memory for a quick resume, at most.
const STICKY_CAPACITY: usize = 4096;

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

impl Source {
    /// What [`answer::Answer::of`] needs to know of it.
    fn origin(&self) -> answer::Origin {
        match self {
            Source::Inbox(_) => answer::Origin::Inbox,
            Source::Signal(id) => answer::Origin::Signal(*id),
            Source::Timer => answer::Origin::Timer,
            Source::Handoff(_) => answer::Origin::Handoff,
        }
    }
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

    /// A turn of this invocation at `now` that stores `events` and
    /// creates `spawn`, marks consumed what this run of turns took from the
    /// inbox and the signals (taking it from `self`), and ends with
    /// `disposition`; cache and idempotency writes are added by the caller.
    fn turn(
        &mut self,
        now: Timestamp,
        events: Vec<(Seq, Event)>,
        spawn: Vec<NewInvocation>,
        disposition: TaskDisposition,
    ) -> Result<TurnCommit, TurnError> {
        Ok(TurnCommit {
            events: to_new_events(events)?,
            spawn,
            consumed_inbox: std::mem::take(&mut self.consumed_inbox),
            consumed_signals: std::mem::take(&mut self.consumed_signals),
            ..TurnCommit::bare(self.invocation, self.epoch, now, disposition)
        })
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
#[derive(Debug, PartialEq)]
enum Gate {
    /// Run the body.
    Run,
    /// Nothing more to do here (answered, or parked to wait for the owner).
    Done,
}

/// How a run of turns ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// Finished, failed or paused: nothing more to do here.
    Done,
    /// Waiting for a timer or a signal; the task was released.
    Parked,
}

#[derive(Debug, PartialEq)]
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
    pub(super) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub(super) fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    pub(super) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(|p| Slot {
            _permit: p,
            core: self.clone(),
        })
    }

    pub(super) fn serves(&self, routing: &Routing) -> bool {
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
