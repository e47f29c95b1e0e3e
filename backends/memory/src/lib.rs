//! An in-memory stent storage backend, for tests and simulation.
//!
//! [`MemoryBackend`] implements every storage trait of
//! [`stent_journal::store`] over plain maps behind one [`std::sync::Mutex`],
//! so every call is atomic with respect to every other. It mirrors the tables
//! of the SQLite backend (executions, tasks, journal, inbox, signals) and
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
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use stent_journal::store::{
    ClaimRequest, ClaimedTask, ExecutionFilter, ExecutionRecord, ExecutionStatus, ExecutionStore,
    InboxId, InboxItem, JournalRow, JournalStore, NewExecution, NewInvocation, Routing, SignalId,
    SignalRecord, SignalStore, StoreError, StoreResult, TaskDisposition, TaskStore, TurnCommit,
};
use stent_journal::{ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};

/// State of a task row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Ready,
    Leased,
    Waiting,
    Done,
    Paused,
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
    wake: bool,
    created: u64,
}

#[derive(Debug, Clone)]
struct SignalRow {
    execution: ExecutionId,
    name: String,
    payload: Vec<u8>,
    consumed_by: Option<InvocationId>,
}

/// One reversible change, recorded while a commit is applied.
enum Undo {
    Task(InvocationId, Option<TaskRow>),
    Execution(ExecutionId, Option<ExecutionRecord>),
    JournalInsert(InvocationId, u32),
    Inbox(i64, Option<(InvocationId, Vec<u8>)>),
    Signal(i64, Option<SignalRow>),
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
        TaskState::Done | TaskState::Paused => {}
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

        for event in &turn.events {
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
        for child in &turn.spawn {
            self.spawn(undo, child, turn.now)?;
        }
        for id in &turn.consumed_inbox {
            match self.inbox.get(&id.0) {
                Some((owner, _)) if *owner == inv => {
                    let old = self.inbox.remove(&id.0);
                    undo.push(Undo::Inbox(id.0, old));
                }
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "inbox item {} of invocation {inv} does not exist (already consumed?)",
                        id.0
                    )));
                }
            }
        }
        for id in &turn.consumed_signals {
            match self.signals.get(&id.0) {
                Some(sig) if sig.consumed_by.is_none() && sig.execution == execution => {
                    let old = sig.clone();
                    let mut new = old.clone();
                    new.consumed_by = Some(inv);
                    self.signals.insert(id.0, new);
                    undo.push(Undo::Signal(id.0, Some(old)));
                }
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "signal {} of execution {execution} is missing or already consumed",
                        id.0
                    )));
                }
            }
        }

        let Some(task) = self.tasks.get(&inv) else {
            return Err(lease_lost());
        };
        let mut task = task.clone();
        match &turn.disposition {
            TaskDisposition::Hold { lease_until } => {
                task.lease_until = Some(*lease_until);
                self.set_task(undo, inv, task);
            }
            TaskDisposition::Park { run_at } => {
                task.lease_owner = None;
                task.lease_until = None;
                if task.wake {
                    task.state = TaskState::Ready;
                    task.run_at = turn.now;
                } else if let Some(t) = run_at {
                    task.state = TaskState::Ready;
                    task.run_at = *t;
                } else {
                    task.state = TaskState::Waiting;
                }
                task.wake = false;
                self.set_task(undo, inv, task);
            }
            TaskDisposition::Finish {
                deliver,
                execution: outcome,
            } => {
                task.state = TaskState::Done;
                task.lease_owner = None;
                task.lease_until = None;
                task.wake = false;
                self.set_task(undo, inv, task);
                if let Some(d) = deliver {
                    undo.push(Undo::NextInbox(self.next_inbox));
                    self.next_inbox += 1;
                    let id = self.next_inbox;
                    self.inbox.insert(id, (d.parent, d.event.clone()));
                    undo.push(Undo::Inbox(id, None));
                    self.wake_task(undo, d.parent, turn.now);
                }
                if let Some(o) = outcome {
                    self.update_execution(undo, execution, |rec| {
                        rec.status = o.status;
                        rec.terminal_event = Some(o.terminal_event.clone());
                        rec.completed_at = Some(turn.now);
                    });
                }
            }
            TaskDisposition::Pause { report } => {
                task.state = TaskState::Paused;
                task.lease_owner = None;
                task.lease_until = None;
                task.wake = false;
                self.set_task(undo, inv, task);
                self.update_execution(undo, execution, |rec| {
                    rec.status = ExecutionStatus::Paused;
                    rec.pause_report = Some(report.clone());
                });
            }
        }
        Ok(())
    }
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
        Ok(self.lock().executions.get(&id).cloned())
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        let state = self.lock();
        let mut rows: Vec<&ExecutionRecord> = state
            .executions
            .values()
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .collect();
        rows.sort_by_key(|r| (Reverse(r.created_at), r.id));
        Ok(rows
            .into_iter()
            .skip(filter.offset)
            .take(filter.limit)
            .cloned()
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
            .map(|(id, t)| (t.routing.priority, t.run_at, t.created, *id))
            .collect();
        eligible.sort_by_key(|&(p, run_at, created, _)| (Reverse(p), run_at, created));
        eligible.truncate(request.limit);

        let mut claimed = Vec::with_capacity(eligible.len());
        for (_, _, _, id) in eligible {
            let Some(task) = state.tasks.get_mut(&id) else {
                continue;
            };
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
            };
            if let Some(exec) = state.executions.get_mut(&out.execution)
                && exec.status == ExecutionStatus::Pending
            {
                exec.status = ExecutionStatus::Running;
                exec.started_at = Some(request.now);
            }
            claimed.push(out);
        }
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
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
    async fn send_signal(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        let mut state = self.lock();
        if !state.executions.contains_key(&execution) {
            return Err(StoreError::NotFound(format!("execution {execution}")));
        }
        state.next_signal += 1;
        let id = state.next_signal;
        state.signals.insert(
            id,
            SignalRow {
                execution,
                name: name.to_string(),
                payload,
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
                s.execution == execution && s.consumed_by.is_none() && names.contains(&s.name)
            })
            .map(|(id, s)| SignalRecord {
                id: SignalId(*id),
                name: s.name.clone(),
                payload: s.payload.clone(),
            })
            .collect())
    }
}
