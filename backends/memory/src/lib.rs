//! An in-memory stent storage backend, for tests and simulation.
//!
//! [`MemoryBackend`] implements every storage trait of
//! [`stent_journal::store`] over plain maps behind one [`std::sync::Mutex`],
//! so every call is atomic with respect to every other. It mirrors the tables
//! of the SQLite backend (executions, tasks, journal, inbox, signals, dead
//! letters, cache, idempotency keys) and
//! follows exactly the same rules; the shared conformance suite
//! (`stent-conformance`) checks that. Nothing is persisted: dropping the last
//! clone drops the data.
//!
//! A failed [`TaskStore::commit`] leaves no trace: every change made while
//! applying the batch is recorded in an undo log and reverted if any turn is
//! refused.
//!
//! ```
//! use stent_journal::store::{ExecutionStore, NewExecution, NewInvocation, Routing};
//! use stent_journal::{ExecutionId, Timestamp};
//! use stent_memory::MemoryBackend;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let backend = MemoryBackend::new();
//! let id = ExecutionId::new_random();
//! backend
//!     .create_execution(NewExecution {
//!         id,
//!         function: "shop::checkout".into(),
//!         created_at: Timestamp(1_000),
//!         deadline: None,
//!         code_version: None,
//!         root: NewInvocation {
//!             invocation: id.root_invocation(),
//!             execution: id,
//!             function: "shop::checkout".into(),
//!             routing: Routing::default(),
//!             run_at: Timestamp(1_000),
//!             started_event: vec![0xa0],
//!             lease: None,
//!         },
//!     })
//!     .await
//!     .unwrap();
//! assert!(backend.execution(id).await.unwrap().is_some());
//! # });
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use stent_journal::plan::{Effect, conflict};
use stent_journal::store::{
    ATTEMPT_FAILURES_KEPT, AttemptFailure, CacheStore, ClaimRequest, ClaimedTask, CleanupCounts,
    DeadLetterRecord, DeadLetterStore, Delivery, ExecutionFilter, ExecutionOutcome,
    ExecutionRecord, ExecutionStatus, ExecutionStore, IdempotencyBegin, IdempotencyStore, InboxId,
    InboxItem, InspectStore, JournalRow, JournalStore, NewExecution, NewInvocation, QueueStats,
    Routing, SignalId, SignalRecord, SignalStore, StoreError, StoreResult, StoreStats,
    TaskDisposition, TaskFilter, TaskRecord, TaskState as StoredTaskState, TaskStore, TurnCommit,
    WorkerRecord,
};
use stent_journal::{
    CallKey, EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId,
};

/// State of a task row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Ready,
    Leased,
    Waiting,
    Done,
    Paused,
    /// Dead-lettered: waits for a person to replay or discard it.
    Dead,
    /// Its execution was ended (cancelled or timed out).
    Cancelled,
}

#[derive(Debug, Clone)]
struct TaskRow {
    execution: ExecutionId,
    function: String,
    routing: Routing,
    state: TaskState,
    run_at: Timestamp,
    lease_owner: Option<WorkerId>,
    lease_until: Option<Timestamp>,
    epoch: i64,
    attempts: u32,
    /// The epoch of the lapsed lease the last claim took over (`None`: the
    /// last claim took a ready task, or the takeover was forgiven).
    lapsed_epoch: Option<i64>,
    retries: u32,
    /// The last failed attempt: when, and why.
    last_failure: Option<(Timestamp, String)>,
    /// The last failed attempts that were retried, oldest first.
    failures: Vec<AttemptFailure>,
    wake: bool,
    created: u64,
}

/// An idempotency key: its owner, and its value once done.
#[derive(Debug, Clone)]
struct IdempotencyRow {
    owner: InvocationId,
    value: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct SignalRow {
    execution: ExecutionId,
    name: String,
    payload: Vec<u8>,
    /// The sender's key, if it gave one (a signal is stored once per key).
    key: Option<String>,
    consumed_by: Option<InvocationId>,
}

impl SignalRow {
    /// This signal as the storage traits report it, under `id`.
    fn record(&self, id: i64) -> SignalRecord {
        SignalRecord {
            id: SignalId(id),
            name: self.name.clone(),
            payload: self.payload.clone(),
        }
    }
}

/// One reversible change, recorded while a commit is applied.
enum Undo {
    Task(InvocationId, Option<TaskRow>),
    Execution(ExecutionId, Option<ExecutionRecord>),
    JournalInsert(InvocationId, u32),
    Inbox(i64, Option<(InvocationId, Vec<u8>)>),
    Signal(i64, Option<SignalRow>),
    Cache(CallKey, Option<Vec<u8>>),
    Idempotency(String, Option<IdempotencyRow>),
    DeadLetter(InvocationId, Option<DeadLetterRecord>),
    NextInbox(i64),
    NextCreated(u64),
}

#[derive(Debug, Default)]
struct State {
    executions: HashMap<ExecutionId, ExecutionRecord>,
    tasks: HashMap<InvocationId, TaskRow>,
    journal: HashMap<InvocationId, BTreeMap<u32, JournalRow>>,
    inbox: BTreeMap<i64, (InvocationId, Vec<u8>)>,
    signals: BTreeMap<i64, SignalRow>,
    cache: HashMap<CallKey, Vec<u8>>,
    idempotency: HashMap<String, IdempotencyRow>,
    dead_letters: HashMap<InvocationId, DeadLetterRecord>,
    workers: BTreeMap<String, WorkerRecord>,
    next_inbox: i64,
    next_signal: i64,
    next_created: u64,
}

/// An in-memory backend. Cloning it gives another handle to the same data.
///
/// Every method takes one lock for its whole duration, so calls are atomic
/// and linearizable; it never suspends, and never reads a clock.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a half-applied commit
        // behind (commits are undone on every error path before returning), so
        // a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wake(task: &mut TaskRow, now: Timestamp) {
    match task.state {
        TaskState::Done | TaskState::Paused | TaskState::Dead | TaskState::Cancelled => {}
        TaskState::Waiting => {
            task.wake = true;
            task.state = TaskState::Ready;
            task.run_at = now;
        }
        TaskState::Ready => {
            task.wake = true;
            task.run_at = task.run_at.min(now);
        }
        TaskState::Leased => task.wake = true,
    }
}

impl State {
    fn new_task(&mut self, inv: &NewInvocation, undo: Option<&mut Vec<Undo>>) -> TaskRow {
        if let Some(undo) = undo {
            undo.push(Undo::NextCreated(self.next_created));
        }
        self.next_created += 1;
        let (state, lease_owner, lease_until, epoch, attempts) = match &inv.lease {
            Some(grant) => (
                TaskState::Leased,
                Some(grant.worker.clone()),
                Some(grant.until),
                1,
                1,
            ),
            None => (TaskState::Ready, None, None, 0, 0),
        };
        TaskRow {
            execution: inv.execution,
            function: inv.function.clone(),
            routing: inv.routing.clone(),
            state,
            run_at: inv.run_at,
            lease_owner,
            lease_until,
            epoch,
            attempts,
            lapsed_epoch: None,
            retries: 0,
            last_failure: None,
            failures: Vec::new(),
            wake: false,
            created: self.next_created,
        }
    }

    fn started_row(inv: &NewInvocation, now: Timestamp) -> JournalRow {
        JournalRow {
            seq: Seq(0),
            kind: stent_journal::EventKind::Started.as_str().to_string(),
            bytes: inv.started_event.clone(),
            recorded_at: now,
        }
    }

    fn set_task(&mut self, undo: &mut Vec<Undo>, id: InvocationId, row: TaskRow) {
        let old = self.tasks.insert(id, row);
        undo.push(Undo::Task(id, old));
    }

    fn wake_task(&mut self, undo: &mut Vec<Undo>, id: InvocationId, now: Timestamp) {
        if let Some(task) = self.tasks.get(&id) {
            let mut new = task.clone();
            wake(&mut new, now);
            self.set_task(undo, id, new);
        }
    }

    fn update_execution(
        &mut self,
        undo: &mut Vec<Undo>,
        id: ExecutionId,
        f: impl FnOnce(&mut ExecutionRecord),
    ) {
        if let Some(rec) = self.executions.get_mut(&id) {
            let old = rec.clone();
            f(rec);
            undo.push(Undo::Execution(id, Some(old)));
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Task(id, old) => match old {
                    Some(row) => {
                        self.tasks.insert(id, row);
                    }
                    None => {
                        self.tasks.remove(&id);
                    }
                },
                Undo::Execution(id, old) => match old {
                    Some(rec) => {
                        self.executions.insert(id, rec);
                    }
                    None => {
                        self.executions.remove(&id);
                    }
                },
                Undo::JournalInsert(inv, seq) => {
                    if let Some(rows) = self.journal.get_mut(&inv) {
                        rows.remove(&seq);
                        if rows.is_empty() {
                            self.journal.remove(&inv);
                        }
                    }
                }
                Undo::Inbox(id, old) => match old {
                    Some(row) => {
                        self.inbox.insert(id, row);
                    }
                    None => {
                        self.inbox.remove(&id);
                    }
                },
                Undo::Signal(id, old) => match old {
                    Some(row) => {
                        self.signals.insert(id, row);
                    }
                    None => {
                        self.signals.remove(&id);
                    }
                },
                Undo::Cache(key, old) => match old {
                    Some(v) => {
                        self.cache.insert(key, v);
                    }
                    None => {
                        self.cache.remove(&key);
                    }
                },
                Undo::Idempotency(key, old) => match old {
                    Some(row) => {
                        self.idempotency.insert(key, row);
                    }
                    None => {
                        self.idempotency.remove(&key);
                    }
                },
                Undo::DeadLetter(task, old) => match old {
                    Some(rec) => {
                        self.dead_letters.insert(task, rec);
                    }
                    None => {
                        self.dead_letters.remove(&task);
                    }
                },
                Undo::NextInbox(n) => self.next_inbox = n,
                Undo::NextCreated(n) => self.next_created = n,
            }
        }
    }

    fn append(
        &mut self,
        undo: &mut Vec<Undo>,
        inv: InvocationId,
        row: JournalRow,
    ) -> StoreResult<()> {
        let seq = row.seq.0;
        let rows = self.journal.entry(inv).or_default();
        if rows.contains_key(&seq) {
            return Err(StoreError::Conflict(format!(
                "journal of invocation {inv} already has an event at seq {seq}"
            )));
        }
        rows.insert(seq, row);
        undo.push(Undo::JournalInsert(inv, seq));
        Ok(())
    }

    fn spawn(
        &mut self,
        undo: &mut Vec<Undo>,
        inv: &NewInvocation,
        now: Timestamp,
    ) -> StoreResult<()> {
        if self.tasks.contains_key(&inv.invocation) {
            return Err(StoreError::Conflict(format!(
                "invocation {} already exists",
                inv.invocation
            )));
        }
        let row = self.new_task(inv, Some(undo));
        self.set_task(undo, inv.invocation, row);
        self.append(undo, inv.invocation, Self::started_row(inv, now))
    }

    fn apply_turn(&mut self, undo: &mut Vec<Undo>, turn: &TurnCommit) -> StoreResult<()> {
        let inv = turn.invocation;
        let lease_lost = || StoreError::LeaseLost {
            invocation: inv,
            epoch: turn.epoch,
        };
        let task = self.tasks.get(&inv).ok_or_else(lease_lost)?;
        if task.state != TaskState::Leased || task.epoch != turn.epoch.0 {
            return Err(lease_lost());
        }
        let execution = task.execution;
        for effect in turn.plan() {
            match effect {
                Effect::Fence => self.dispose(undo, turn)?,
                Effect::Events(events) => {
                    // Journals are numbered without gaps: a turn whose
                    // events would leave one is an engine bug this backend
                    // (which the simulation runs on) reports at once.
                    let len = self.journal.get(&inv).map_or(0, BTreeMap::len) as u32;
                    let mut seqs: Vec<u32> = events.iter().map(|e| e.seq.0).collect();
                    seqs.sort_unstable();
                    if let Some((i, seq)) = seqs
                        .iter()
                        .enumerate()
                        .find(|(i, seq)| **seq != len + *i as u32)
                        .filter(|(_, seq)| **seq >= len)
                    {
                        return Err(StoreError::Conflict(format!(
                            "journal of invocation {inv} has {} events; an event at seq {seq} would leave a gap",
                            len + i as u32
                        )));
                    }
                    for event in events {
                        self.append(
                            undo,
                            inv,
                            JournalRow {
                                seq: event.seq,
                                kind: event.kind.as_str().to_string(),
                                bytes: event.bytes.clone(),
                                recorded_at: turn.now,
                            },
                        )?;
                    }
                }
                Effect::Spawn(children) => {
                    for child in children {
                        self.spawn(undo, child, turn.now)?;
                    }
                }
                Effect::ConsumeInbox(ids) => {
                    for id in ids {
                        match self.inbox.get(&id.0) {
                            Some((owner, _)) if *owner == inv => {
                                let old = self.inbox.remove(&id.0);
                                undo.push(Undo::Inbox(id.0, old));
                            }
                            _ => return Err(conflict::inbox_missing(inv, &[*id])),
                        }
                    }
                }
                Effect::ConsumeSignals(ids) => {
                    for id in ids {
                        match self.signals.get(&id.0) {
                            Some(sig)
                                if sig.consumed_by.is_none() && sig.execution == execution =>
                            {
                                let old = sig.clone();
                                let mut new = old.clone();
                                new.consumed_by = Some(inv);
                                self.signals.insert(id.0, new);
                                undo.push(Undo::Signal(id.0, Some(old)));
                            }
                            _ => return Err(conflict::signals_missing(execution, &[*id])),
                        }
                    }
                }
                Effect::CachePut(entries) => {
                    for (key, value) in entries {
                        if !self.cache.contains_key(key) {
                            self.cache.insert(*key, value.clone());
                            undo.push(Undo::Cache(*key, None));
                        }
                    }
                }
                Effect::IdempotencyDone(keys) => {
                    for (key, value) in keys {
                        match self.idempotency.get_mut(key) {
                            Some(row) if row.owner == inv => {
                                let old = row.clone();
                                row.value = Some(value.clone());
                                undo.push(Undo::Idempotency(key.clone(), Some(old)));
                            }
                            _ => return Err(conflict::idempotency_not_held(key, inv)),
                        }
                    }
                }
                Effect::IdempotencyRelease(keys) => {
                    for key in keys {
                        if self
                            .idempotency
                            .get(key)
                            .is_some_and(|row| row.owner == inv)
                        {
                            let old = self.idempotency.remove(key);
                            undo.push(Undo::Idempotency(key.clone(), old));
                        }
                    }
                }
                Effect::RecordFailure(error) => {
                    let mut task = self.tasks.get(&inv).ok_or_else(lease_lost)?.clone();
                    task.last_failure = Some((turn.now, error.to_string()));
                    task.failures.push(AttemptFailure {
                        attempt: task.retries,
                        at: turn.now,
                        error: error.to_string(),
                    });
                    let keep = ATTEMPT_FAILURES_KEPT as usize;
                    if task.failures.len() > keep {
                        task.failures.drain(..task.failures.len() - keep);
                    }
                    self.set_task(undo, inv, task);
                }
                Effect::Deliver(d) => self.deliver(undo, d, turn.now),
                Effect::FinishExecution(outcome) => {
                    self.finish_execution(undo, execution, outcome, turn.now)
                }
                Effect::PauseExecution(report) => {
                    self.update_execution(undo, execution, |rec| {
                        rec.status = ExecutionStatus::Paused;
                        rec.pause_report = Some(report.to_string());
                    });
                }
                Effect::DeadLetter(reason) => {
                    let task = self.tasks.get(&inv).ok_or_else(lease_lost)?;
                    let record = DeadLetterRecord {
                        task: inv,
                        execution,
                        function: task.function.clone(),
                        queue: task.routing.queue.clone(),
                        reason: reason.to_string(),
                        retries: task.retries,
                        failed_at: turn.now,
                    };
                    let old = self.dead_letters.insert(inv, record);
                    undo.push(Undo::DeadLetter(inv, old));
                }
            }
        }
        Ok(())
    }

    /// The fence's change to the turn's task row (see [`Effect::Fence`]):
    /// its lease extended or released, and its next state.
    fn dispose(&mut self, undo: &mut Vec<Undo>, turn: &TurnCommit) -> StoreResult<()> {
        let inv = turn.invocation;
        let Some(task) = self.tasks.get(&inv) else {
            return Err(StoreError::LeaseLost {
                invocation: inv,
                epoch: turn.epoch,
            });
        };
        let mut task = task.clone();
        // Every turn the lease holder gets through resets the count of
        // claims that did not.
        task.attempts = 0;
        match &turn.disposition {
            TaskDisposition::Hold { lease_until } => {
                task.lease_until = Some(*lease_until);
            }
            TaskDisposition::Park { run_at } => {
                let woken = task.wake;
                release(&mut task);
                if woken {
                    task.state = TaskState::Ready;
                    task.run_at = turn.now;
                } else if let Some(t) = run_at {
                    task.state = TaskState::Ready;
                    task.run_at = *t;
                } else {
                    task.state = TaskState::Waiting;
                }
            }
            TaskDisposition::Finish { .. } => {
                release(&mut task);
                task.state = TaskState::Done;
            }
            TaskDisposition::Pause { .. } => {
                release(&mut task);
                task.state = TaskState::Paused;
            }
            TaskDisposition::Retry { run_at, .. } => {
                // A retry waits for its time even if woken during the turn.
                release(&mut task);
                task.state = TaskState::Ready;
                task.run_at = *run_at;
                task.retries = task.retries.saturating_add(1);
            }
            TaskDisposition::DeadLetter { .. } => {
                release(&mut task);
                task.state = TaskState::Dead;
            }
        }
        self.set_task(undo, inv, task);
        Ok(())
    }

    /// What finishing a task does besides ending it: deliver its result to
    /// the parent (waking it), or record the execution's outcome.
    fn finish_effects(
        &mut self,
        undo: &mut Vec<Undo>,
        execution: ExecutionId,
        deliver: Option<&Delivery>,
        outcome: Option<&ExecutionOutcome>,
        now: Timestamp,
    ) {
        if let Some(d) = deliver {
            self.deliver(undo, d, now);
        }
        if let Some(o) = outcome {
            self.finish_execution(undo, execution, o, now);
        }
    }

    /// Puts a finished child's result in its parent's inbox and wakes the
    /// parent.
    fn deliver(&mut self, undo: &mut Vec<Undo>, d: &Delivery, now: Timestamp) {
        undo.push(Undo::NextInbox(self.next_inbox));
        self.next_inbox += 1;
        let id = self.next_inbox;
        self.inbox.insert(id, (d.parent, d.event.clone()));
        undo.push(Undo::Inbox(id, None));
        self.wake_task(undo, d.parent, now);
    }

    /// Records how `execution` ended.
    fn finish_execution(
        &mut self,
        undo: &mut Vec<Undo>,
        execution: ExecutionId,
        outcome: &ExecutionOutcome,
        now: Timestamp,
    ) {
        self.update_execution(undo, execution, |rec| {
            rec.status = outcome.status;
            rec.terminal_event = Some(outcome.terminal_event.clone());
            rec.completed_at = Some(now);
        });
    }

    /// The record with its derived `retries` (summed over its tasks).
    fn record(&self, rec: &ExecutionRecord) -> ExecutionRecord {
        let retries = self
            .tasks
            .values()
            .filter(|t| t.execution == rec.id)
            .fold(0u32, |sum, t| sum.saturating_add(t.retries));
        ExecutionRecord {
            retries,
            ..rec.clone()
        }
    }

    /// Executions that ended before `before`, their invocations, and how
    /// many journal events those hold.
    fn old_executions(
        &self,
        before: Timestamp,
    ) -> (HashSet<ExecutionId>, HashSet<InvocationId>, u64) {
        let executions: HashSet<ExecutionId> = self
            .executions
            .values()
            .filter(|r| r.status.is_terminal() && r.completed_at.is_some_and(|t| t < before))
            .map(|r| r.id)
            .collect();
        let invocations: HashSet<InvocationId> = self
            .tasks
            .iter()
            .filter(|(_, t)| executions.contains(&t.execution))
            .map(|(id, _)| *id)
            .collect();
        let events = invocations
            .iter()
            .filter_map(|inv| self.journal.get(inv))
            .map(|rows| rows.len() as u64)
            .sum();
        (executions, invocations, events)
    }
}

/// Drops the task's lease (and any wake that came during it).
fn release(task: &mut TaskRow) {
    task.lease_owner = None;
    task.lease_until = None;
    task.wake = false;
}

fn claimable(task: &TaskRow, req: &ClaimRequest) -> bool {
    let runnable = match task.state {
        TaskState::Ready => task.run_at <= req.now,
        TaskState::Leased => task.lease_until.is_some_and(|t| t < req.now),
        _ => false,
    };
    runnable
        && req.functions.contains(&task.function)
        && req
            .queues
            .as_ref()
            .is_none_or(|qs| qs.contains(&task.routing.queue))
        && req
            .tags
            .as_ref()
            .is_none_or(|tags| task.routing.tags.iter().any(|t| tags.contains(t)))
}

#[async_trait]
impl JournalStore for MemoryBackend {
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>> {
        let state = self.lock();
        Ok(state
            .journal
            .get(&invocation)
            .map(|rows| rows.range(from.0..).map(|(_, r)| r.clone()).collect())
            .unwrap_or_default())
    }

    /// Every journal row of every invocation of `execution` (only those of
    /// `kinds`, if given), grouped by invocation in task creation order, each
    /// in seq order. Invocations without a matching row are left out.
    async fn read_execution_journal(
        &self,
        execution: ExecutionId,
        kinds: Option<&[EventKind]>,
    ) -> StoreResult<Vec<(InvocationId, Vec<JournalRow>)>> {
        let state = self.lock();
        let mut invocations: Vec<(u64, InvocationId)> = state
            .tasks
            .iter()
            .filter(|(_, t)| t.execution == execution)
            .map(|(id, t)| (t.created, *id))
            .collect();
        invocations.sort();
        Ok(invocations
            .into_iter()
            .filter_map(|(_, inv)| {
                let rows: Vec<JournalRow> = state
                    .journal
                    .get(&inv)?
                    .values()
                    .filter(|r| kinds.is_none_or(|ks| ks.iter().any(|k| k.as_str() == r.kind)))
                    .cloned()
                    .collect();
                (!rows.is_empty()).then_some((inv, rows))
            })
            .collect())
    }
}

#[async_trait]
impl ExecutionStore for MemoryBackend {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        let mut state = self.lock();
        let root = &execution.root;
        if state.executions.contains_key(&execution.id) {
            return Err(StoreError::Conflict(format!(
                "execution {} already exists",
                execution.id
            )));
        }
        if state.tasks.contains_key(&root.invocation)
            || state.journal.contains_key(&root.invocation)
        {
            return Err(StoreError::Conflict(format!(
                "invocation {} already exists",
                root.invocation
            )));
        }
        let leased = root.lease.is_some();
        state.executions.insert(
            execution.id,
            ExecutionRecord {
                id: execution.id,
                function: execution.function.clone(),
                status: if leased {
                    ExecutionStatus::Running
                } else {
                    ExecutionStatus::Pending
                },
                routing: root.routing.clone(),
                created_at: execution.created_at,
                started_at: leased.then_some(execution.created_at),
                completed_at: None,
                deadline: execution.deadline,
                terminal_event: None,
                pause_report: None,
                retries: 0,
                code_version: execution.code_version.clone(),
            },
        );
        let mut task = state.new_task(root, None);
        task.execution = execution.id;
        state.tasks.insert(root.invocation, task);
        let row = State::started_row(root, execution.created_at);
        state
            .journal
            .entry(root.invocation)
            .or_default()
            .insert(0, row);
        Ok(())
    }

    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        let state = self.lock();
        Ok(state.executions.get(&id).map(|rec| state.record(rec)))
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        let range = filter
            .id_range()
            .map_err(StoreError::InvalidRequest)?
            .map(|(lo, hi)| (ExecutionId::from_uuid(lo), ExecutionId::from_uuid(hi)));
        let state = self.lock();
        let mut rows: Vec<&ExecutionRecord> = state
            .executions
            .values()
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.function.as_ref().is_none_or(|f| &r.function == f))
            .filter(|r| filter.queue.as_ref().is_none_or(|q| &r.routing.queue == q))
            .filter(|r| {
                filter
                    .tag
                    .as_ref()
                    .is_none_or(|t| r.routing.tags.contains(t))
            })
            .filter(|r| filter.created_after.is_none_or(|t| r.created_at >= t))
            .filter(|r| filter.created_before.is_none_or(|t| r.created_at < t))
            .filter(|r| range.is_none_or(|(lo, hi)| r.id >= lo && r.id <= hi))
            .collect();
        rows.sort_by_key(|r| (Reverse(r.created_at), r.id));
        Ok(rows
            .into_iter()
            .skip(filter.offset)
            .take(filter.limit)
            .map(|rec| state.record(rec))
            .collect())
    }

    async fn queue_depth(&self, queue: Option<&str>, _now: Timestamp) -> StoreResult<u64> {
        let state = self.lock();
        let n = state
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Ready)
            .filter(|t| queue.is_none_or(|q| t.routing.queue == q))
            .count();
        Ok(n as u64)
    }

    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut state = self.lock();
        let Some(rec) = state.executions.get_mut(&id) else {
            return Err(StoreError::NotFound(format!("execution {id}")));
        };
        if rec.status.is_terminal() {
            return Ok(false);
        }
        rec.status = status;
        rec.terminal_event = Some(terminal_event.clone());
        rec.completed_at = Some(now);
        let state = &mut *state;
        let kind = status.terminal_kind().unwrap_or(EventKind::Cancelled);
        let root = state.journal.entry(id.root_invocation()).or_default();
        let seq = root.last_key_value().map_or(0, |(seq, _)| seq + 1);
        root.insert(
            seq,
            JournalRow {
                seq: Seq(seq),
                kind: kind.as_str().to_string(),
                bytes: terminal_event,
                recorded_at: now,
            },
        );
        for task in state.tasks.values_mut() {
            if task.execution == id && task.state != TaskState::Done {
                release(task);
                task.state = TaskState::Cancelled;
            }
        }
        // Its dead letters go (their tasks are cancelled), and so do the
        // idempotency keys its invocations were running: they will never
        // finish them.
        state.dead_letters.retain(|_, d| d.execution != id);
        let tasks = &state.tasks;
        state.idempotency.retain(|_, row| {
            row.value.is_some() || tasks.get(&row.owner).is_none_or(|t| t.execution != id)
        });
        Ok(true)
    }

    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        let mut state = self.lock();
        let Some(rec) = state.executions.get_mut(&id) else {
            return Err(StoreError::NotFound(format!("execution {id}")));
        };
        if rec.status != ExecutionStatus::Paused {
            return Ok(false);
        }
        rec.status = ExecutionStatus::Running;
        rec.pause_report = None;
        for task in state.tasks.values_mut() {
            if task.execution == id && task.state == TaskState::Paused {
                release(task);
                task.state = TaskState::Ready;
                task.run_at = now;
                task.attempts = 0;
                task.wake = false;
            }
        }
        Ok(true)
    }

    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts> {
        let mut state = self.lock();
        let (executions, invocations, events) = state.old_executions(before);
        let counts = CleanupCounts {
            executions: executions.len() as u64,
            tasks: invocations.len() as u64,
            events,
        };
        if !dry_run {
            let state = &mut *state;
            for inv in &invocations {
                state.journal.remove(inv);
                state.tasks.remove(inv);
            }
            state
                .inbox
                .retain(|_, (owner, _)| !invocations.contains(owner));
            state
                .signals
                .retain(|_, s| !executions.contains(&s.execution));
            state
                .dead_letters
                .retain(|_, d| !executions.contains(&d.execution));
            state.executions.retain(|id, _| !executions.contains(id));
        }
        Ok(counts)
    }
}

#[async_trait]
impl DeadLetterStore for MemoryBackend {
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>> {
        let state = self.lock();
        let mut rows: Vec<&DeadLetterRecord> = state.dead_letters.values().collect();
        rows.sort_by_key(|d| (Reverse(d.failed_at), d.task));
        Ok(rows.into_iter().take(limit).cloned().collect())
    }

    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>> {
        Ok(self.lock().dead_letters.get(&task).cloned())
    }

    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut state = self.lock();
        let Some(letter) = state.dead_letters.remove(&task) else {
            return Ok(false);
        };
        let Some(row) = state.tasks.get_mut(&task) else {
            return Ok(true);
        };
        if row.state != TaskState::Dead {
            return Ok(true);
        }
        release(row);
        row.state = TaskState::Ready;
        row.run_at = now;
        row.attempts = 0;
        if reset_retries {
            row.retries = 0;
        }
        if let Some(q) = queue {
            row.routing.queue = q.to_string();
            if task == letter.execution.root_invocation()
                && let Some(rec) = state.executions.get_mut(&letter.execution)
            {
                rec.routing.queue = q.to_string();
            }
        }
        Ok(true)
    }

    async fn discard_dead_letter(
        &self,
        task: InvocationId,
        deliver: Option<Delivery>,
        execution: Option<ExecutionOutcome>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut state = self.lock();
        let Some(letter) = state.dead_letters.remove(&task) else {
            return Ok(false);
        };
        if let Some(row) = state.tasks.get_mut(&task)
            && row.state == TaskState::Dead
        {
            release(row);
            row.attempts = 0;
            row.state = TaskState::Done;
        }
        // Nothing here can fail, so the undo log is not needed.
        let mut undo = Vec::new();
        state.finish_effects(
            &mut undo,
            letter.execution,
            deliver.as_ref(),
            execution.as_ref(),
            now,
        );
        Ok(true)
    }
}

#[async_trait]
impl CacheStore for MemoryBackend {
    async fn cache_get(&self, key: CallKey) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().cache.get(&key).cloned())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryBackend {
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin> {
        let mut state = self.lock();
        let row = state
            .idempotency
            .entry(key.to_string())
            .or_insert_with(|| IdempotencyRow { owner, value: None });
        Ok(match &row.value {
            Some(value) => IdempotencyBegin::Done(value.clone()),
            None if row.owner == owner => IdempotencyBegin::Owner,
            None => IdempotencyBegin::Running { owner: row.owner },
        })
    }
}

#[async_trait]
impl TaskStore for MemoryBackend {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        if request.limit == 0 || request.functions.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let mut eligible: Vec<(i32, Timestamp, u64, InvocationId)> = state
            .tasks
            .iter()
            .filter(|(_, t)| claimable(t, &request))
            .filter(|(_, t)| {
                let version = state
                    .executions
                    .get(&t.execution)
                    .and_then(|e| e.code_version.as_deref());
                request.runs(version)
            })
            .map(|(id, t)| (t.routing.priority, t.run_at, t.created, *id))
            .collect();
        eligible.sort_by_key(|&(p, run_at, created, _)| (Reverse(p), run_at, created));

        // Free slots of the limited functions: the limit minus the leases
        // still live (an expired lease frees its slot).
        let mut free: HashMap<&str, i64> = HashMap::new();
        for (function, limit) in &request.concurrency_limits {
            let slot = free.entry(function.as_str()).or_insert(i64::MAX);
            *slot = (*slot).min(i64::from(*limit));
        }
        for task in state.tasks.values() {
            if task.state == TaskState::Leased
                && task.lease_until.is_some_and(|t| t >= request.now)
                && let Some(slot) = free.get_mut(task.function.as_str())
            {
                *slot -= 1;
            }
        }
        let mut chosen = Vec::new();
        for (_, _, _, id) in eligible {
            if chosen.len() == request.limit {
                break;
            }
            let function = state.tasks[&id].function.as_str();
            if let Some(slot) = free.get_mut(function) {
                if *slot <= 0 {
                    continue;
                }
                *slot -= 1;
            }
            chosen.push(id);
        }

        let mut claimed = Vec::with_capacity(chosen.len());
        for id in chosen {
            let deadline = state
                .tasks
                .get(&id)
                .and_then(|t| state.executions.get(&t.execution))
                .and_then(|rec| rec.deadline);
            let Some(task) = state.tasks.get_mut(&id) else {
                continue;
            };
            task.lapsed_epoch = (task.state == TaskState::Leased).then_some(task.epoch);
            task.state = TaskState::Leased;
            task.lease_owner = Some(request.worker.clone());
            task.lease_until = Some(request.lease_until);
            task.epoch += 1;
            task.attempts = task.attempts.saturating_add(1);
            task.wake = false;
            let out = ClaimedTask {
                invocation: id,
                execution: task.execution,
                function: task.function.clone(),
                epoch: LeaseEpoch(task.epoch),
                attempts: task.attempts,
                retries: task.retries,
                deadline,
            };
            if let Some(exec) = state.executions.get_mut(&out.execution) {
                if exec.status == ExecutionStatus::Pending {
                    exec.status = ExecutionStatus::Running;
                    exec.started_at = Some(request.now);
                }
                if exec.code_version.is_none() {
                    exec.code_version.clone_from(&request.code_version);
                }
            }
            claimed.push(out);
        }
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        _now: Timestamp, // one process: the caller's clock decides leases
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        let mut state = self.lock();
        let mut lost = Vec::new();
        for (id, epoch) in leases {
            match state.tasks.get_mut(id) {
                Some(t)
                    if t.state == TaskState::Leased
                        && t.lease_owner.as_ref() == Some(worker)
                        && t.epoch == epoch.0 =>
                {
                    t.lease_until = Some(until);
                }
                _ => lost.push(*id),
            }
        }
        Ok(lost)
    }

    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.lock()
            .workers
            .insert(worker.id.as_str().to_string(), worker.clone());
        Ok(())
    }

    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()> {
        self.lock().workers.remove(worker.as_str());
        Ok(())
    }

    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        if let Some(t) = state.tasks.get_mut(&invocation)
            && t.lapsed_epoch == Some(epoch.0)
            && t.attempts > 0
        {
            t.attempts -= 1;
            t.lapsed_epoch = None;
        }
        Ok(())
    }

    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        let state = self.lock();
        Ok(state
            .inbox
            .iter()
            .filter(|(_, (owner, _))| *owner == invocation)
            .map(|(id, (_, event))| InboxItem {
                id: InboxId(*id),
                event: event.clone(),
            })
            .collect())
    }

    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()> {
        let mut state = self.lock();
        let mut undo = Vec::new();
        for turn in &turns {
            if let Err(e) = state.apply_turn(&mut undo, turn) {
                state.rollback(undo);
                return Err(e);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SignalStore for MemoryBackend {
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        let mut state = self.lock();
        if let Some(key) = key
            && let Some((id, sent)) = state
                .signals
                .iter()
                .find(|(_, s)| s.execution == execution && s.key.as_deref() == Some(key))
        {
            return sent.record(*id).resent(execution, key, name, &payload);
        }
        match state.executions.get(&execution) {
            None => return Err(StoreError::NotFound(format!("execution {execution}"))),
            Some(e) if e.status.is_terminal() => {
                return Err(StoreError::ExecutionEnded {
                    execution,
                    status: e.status,
                });
            }
            Some(_) => {}
        }
        state.next_signal += 1;
        let id = state.next_signal;
        state.signals.insert(
            id,
            SignalRow {
                execution,
                name: name.to_string(),
                payload,
                key: key.map(str::to_string),
                consumed_by: None,
            },
        );
        for task in state.tasks.values_mut() {
            if task.execution == execution {
                wake(task, now);
            }
        }
        Ok(SignalId(id))
    }

    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        let state = self.lock();
        Ok(state
            .signals
            .iter()
            .filter(|(_, s)| {
                s.execution == execution
                    && s.consumed_by.is_none()
                    && (names.is_empty() || names.contains(&s.name))
            })
            .map(|(id, s)| s.record(*id))
            .collect())
    }
}

fn stored_state(state: TaskState) -> StoredTaskState {
    match state {
        TaskState::Ready => StoredTaskState::Ready,
        TaskState::Leased => StoredTaskState::Leased,
        TaskState::Waiting => StoredTaskState::Waiting,
        TaskState::Done => StoredTaskState::Done,
        TaskState::Paused => StoredTaskState::Paused,
        TaskState::Dead => StoredTaskState::Dead,
        TaskState::Cancelled => StoredTaskState::Cancelled,
    }
}

fn task_record(invocation: InvocationId, t: &TaskRow) -> TaskRecord {
    TaskRecord {
        invocation,
        execution: t.execution,
        function: t.function.clone(),
        routing: t.routing.clone(),
        state: stored_state(t.state),
        run_at: t.run_at,
        lease_owner: t.lease_owner.clone(),
        lease_until: t.lease_until,
        epoch: LeaseEpoch(t.epoch),
        attempts: t.attempts,
        retries: t.retries,
        last_failure: t.last_failure.clone(),
    }
}

#[async_trait]
impl InspectStore for MemoryBackend {
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let state = self.lock();
        let mut rows: Vec<(&InvocationId, &TaskRow)> = state
            .tasks
            .iter()
            .filter(|(_, t)| filter.execution.is_none_or(|e| t.execution == e))
            .filter(|(_, t)| filter.state.is_none_or(|s| stored_state(t.state) == s))
            .filter(|(_, t)| filter.queue.as_deref().is_none_or(|q| t.routing.queue == q))
            .collect();
        rows.sort_by_key(|(_, t)| t.created);
        Ok(rows
            .into_iter()
            .skip(filter.offset)
            .take(filter.limit)
            .map(|(id, t)| task_record(*id, t))
            .collect())
    }

    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>> {
        let state = self.lock();
        Ok(state
            .tasks
            .get(&invocation)
            .map(|t| task_record(invocation, t)))
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        Ok(self.lock().workers.values().cloned().collect())
    }

    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>> {
        Ok(self
            .lock()
            .tasks
            .get(&invocation)
            .map(|t| t.failures.clone())
            .unwrap_or_default())
    }

    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats> {
        let state = self.lock();
        let executions = ExecutionStatus::ALL
            .into_iter()
            .map(|s| {
                let n = state.executions.values().filter(|r| r.status == s).count();
                (s, n as u64)
            })
            .collect();
        let tasks = StoredTaskState::ALL
            .into_iter()
            .map(|s| {
                let n = state
                    .tasks
                    .values()
                    .filter(|t| stored_state(t.state) == s)
                    .count();
                (s, n as u64)
            })
            .collect();
        let mut queues: BTreeMap<String, QueueStats> = BTreeMap::new();
        for t in state.tasks.values() {
            if !matches!(
                t.state,
                TaskState::Ready | TaskState::Leased | TaskState::Waiting
            ) {
                continue;
            }
            let q = queues
                .entry(t.routing.queue.clone())
                .or_insert_with(|| QueueStats {
                    queue: t.routing.queue.clone(),
                    ..QueueStats::default()
                });
            match t.state {
                TaskState::Ready => {
                    q.ready += 1;
                    if t.run_at <= now {
                        q.due += 1;
                    }
                }
                TaskState::Leased => q.leased += 1,
                _ => q.waiting += 1,
            }
        }
        let mut versions: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for e in state.executions.values() {
            if matches!(
                e.status,
                ExecutionStatus::Pending | ExecutionStatus::Running | ExecutionStatus::Paused
            ) {
                *versions.entry(e.code_version.clone()).or_default() += 1;
            }
        }
        Ok(StoreStats {
            executions,
            tasks,
            queues: queues.into_values().collect(),
            dead_letters: state.dead_letters.len() as u64,
            versions: versions.into_iter().collect(),
        })
    }
}
