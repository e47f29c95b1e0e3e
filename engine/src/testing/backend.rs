//! The storage seen by simulated workers: the memory backend behind a
//! wrapper that counts writes and applies the fault plan at them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stent_journal::store::*;
use stent_journal::{
    CallKey, EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId,
};
use stent_memory::MemoryBackend;
use tokio::sync::mpsc;

/// What happens at one storage write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// The writing worker dies; with `lost`, before its write lands.
    Crash { lost: bool },
    /// The writing worker stalls this long before the write.
    Stall(Duration),
    /// The virtual clock jumps forward before the write.
    Jump(Duration),
    /// The write fails (applied first if `landed`), then storage stays
    /// away from every worker for `down`.
    StorageFault { landed: bool, down: Duration },
}

/// What the wrapper tells the run's supervisor.
#[derive(Debug)]
pub(crate) enum Note {
    /// This worker is dead: start a fresh one.
    Crashed,
    /// This worker stalls past its lease: start a second one.
    Stalled,
}

/// State shared by every worker's wrapper in one run.
pub(crate) struct Shared {
    pub memory: MemoryBackend,
    writes: AtomicU32,
    actions: BTreeMap<u32, Vec<Action>>,
    frozen: Mutex<HashSet<u32>>,
    stalled: Mutex<HashMap<u32, tokio::time::Instant>>,
    /// Storage is away from every worker until then.
    down_until: Mutex<Option<tokio::time::Instant>>,
    notes: mpsc::UnboundedSender<Note>,
    /// Faults that actually happened.
    pub fired: AtomicU32,
    /// Writes refused because the writer's lease was gone (fencing).
    pub refused: AtomicU32,
}

impl Shared {
    pub fn new(
        memory: MemoryBackend,
        actions: BTreeMap<u32, Vec<Action>>,
        notes: mpsc::UnboundedSender<Note>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            memory,
            writes: AtomicU32::new(0),
            actions,
            frozen: Mutex::default(),
            stalled: Mutex::default(),
            down_until: Mutex::default(),
            notes,
            fired: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        })
    }

    /// Storage writes made by workers so far.
    pub fn writes(&self) -> u32 {
        self.writes.load(Ordering::SeqCst)
    }

    /// True once `worker` has crashed.
    pub fn is_frozen(&self, worker: u32) -> bool {
        self.frozen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&worker)
    }

    fn stalled_until(&self, worker: u32) -> Option<tokio::time::Instant> {
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&worker)
            .copied()
    }
}

/// One worker's (or the client's) view of the run's storage.
#[derive(Clone)]
pub(crate) struct SimBackend {
    shared: Arc<Shared>,
    /// 0 is the client (dispatch, signals, reads): never faulted, never
    /// counted. Workers are numbered from 1.
    worker: u32,
}

impl SimBackend {
    pub fn new(shared: Arc<Shared>, worker: u32) -> SimBackend {
        SimBackend { shared, worker }
    }

    fn inner(&self) -> &MemoryBackend {
        &self.shared.memory
    }

    /// Waits while this worker is stalled; never returns once it is dead.
    async fn gate(&self) {
        if self.worker == 0 {
            return;
        }
        loop {
            if self.shared.is_frozen(self.worker) {
                std::future::pending::<()>().await;
            }
            match self.shared.stalled_until(self.worker) {
                Some(t) if t > tokio::time::Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// This worker dies here: it never returns.
    async fn die(&self) -> ! {
        self.shared
            .frozen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.worker);
        let _ = self.shared.notes.send(Note::Crashed);
        std::future::pending::<()>().await;
        unreachable!("a pending future never completes")
    }

    /// Refuses a worker's call while storage is away.
    fn reachable(&self) -> StoreResult<()> {
        if self.worker == 0 {
            return Ok(());
        }
        let down = *self
            .shared
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match down {
            Some(until) if tokio::time::Instant::now() < until => Err(StoreError::unavailable(
                "connection refused: storage is away (simulated)",
            )),
            _ => Ok(()),
        }
    }

    /// Counts a write and applies the faults planned at it that act before
    /// the write. Returns what else happens to it.
    async fn before_write(&self) -> Planned {
        self.gate().await;
        let mut planned = Planned::default();
        if self.worker == 0 {
            return planned;
        }
        let n = self.shared.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(actions) = self.shared.actions.get(&n) else {
            return planned;
        };
        for action in actions.clone() {
            self.shared.fired.fetch_add(1, Ordering::SeqCst);
            match action {
                Action::Crash { lost: true } => self.die().await,
                Action::Crash { lost: false } => planned.die_after = true,
                Action::Stall(d) => {
                    self.shared
                        .stalled
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(self.worker, tokio::time::Instant::now() + d);
                    let _ = self.shared.notes.send(Note::Stalled);
                    self.gate().await;
                }
                Action::Jump(d) => tokio::time::advance(d).await,
                Action::StorageFault { landed, down } => planned.fail = Some((landed, down)),
            }
        }
        planned
    }

    /// Runs a write under the fault plan.
    async fn write<T>(
        &self,
        op: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.reachable()?;
        let planned = self.before_write().await;
        let out = match planned.fail {
            None => op.await,
            Some((landed, down)) => {
                if landed {
                    let _ = op.await;
                }
                *self
                    .shared
                    .down_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + down);
                Err(StoreError::unavailable(format!(
                    "connection lost (simulated; the write {} applied)",
                    if landed { "was" } else { "was not" }
                )))
            }
        };
        if matches!(out, Err(StoreError::LeaseLost { .. })) {
            self.shared.refused.fetch_add(1, Ordering::SeqCst);
        }
        if planned.die_after {
            self.die().await;
        }
        self.gate().await;
        out
    }

    /// Runs a read: waits out stalls (and never returns once dead); fails
    /// while storage is away.
    async fn read<T>(
        &self,
        op: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.gate().await;
        self.reachable()?;
        let out = op.await;
        self.gate().await;
        out
    }
}

/// What the fault plan does to one write besides acting before it.
#[derive(Debug, Default)]
struct Planned {
    /// The worker dies right after the write.
    die_after: bool,
    /// The write fails: applied first if `.0`; storage then stays away for `.1`.
    fail: Option<(bool, Duration)>,
}

#[async_trait]
impl JournalStore for SimBackend {
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>> {
        self.read(self.inner().read_journal(invocation, from)).await
    }
    async fn read_execution_journal(
        &self,
        execution: ExecutionId,
        kinds: Option<&[EventKind]>,
    ) -> StoreResult<Vec<(InvocationId, Vec<JournalRow>)>> {
        self.read(self.inner().read_execution_journal(execution, kinds))
            .await
    }
}

#[async_trait]
impl ExecutionStore for SimBackend {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        self.read(self.inner().create_execution(execution)).await
    }
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.read(self.inner().execution(id)).await
    }
    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        self.read(self.inner().list_executions(filter)).await
    }
    async fn queue_depth(&self, queue: Option<&str>, now: Timestamp) -> StoreResult<u64> {
        self.read(self.inner().queue_depth(queue, now)).await
    }
    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.write(self.inner().end_execution(id, status, terminal_event, now))
            .await
    }
    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts> {
        self.read(self.inner().cleanup(before, dry_run)).await
    }
    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        self.write(self.inner().resume_execution(id, now)).await
    }
}

#[async_trait]
impl DeadLetterStore for SimBackend {
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>> {
        self.read(self.inner().list_dead_letters(limit)).await
    }
    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>> {
        self.read(self.inner().get_dead_letter(task)).await
    }
    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.read(
            self.inner()
                .replay_dead_letter(task, queue, reset_retries, now),
        )
        .await
    }
    async fn discard_dead_letter(
        &self,
        task: InvocationId,
        deliver: Option<Delivery>,
        execution: Option<ExecutionOutcome>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.read(
            self.inner()
                .discard_dead_letter(task, deliver, execution, now),
        )
        .await
    }
}

#[async_trait]
impl CacheStore for SimBackend {
    async fn cache_get(&self, key: CallKey) -> StoreResult<Option<Vec<u8>>> {
        self.read(self.inner().cache_get(key)).await
    }
}

#[async_trait]
impl IdempotencyStore for SimBackend {
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin> {
        self.write(self.inner().begin_idempotent(key, owner)).await
    }
}

#[async_trait]
impl TaskStore for SimBackend {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        // An empty claim is an idle poll, not a write: only a claim that
        // leased something counts (and can be where the worker dies).
        self.gate().await;
        self.reachable()?;
        let tasks = self.inner().claim(request).await?;
        if tasks.is_empty() || self.worker == 0 {
            return Ok(tasks);
        }
        let planned = self.before_write().await;
        if let Some((_, down)) = planned.fail {
            // The claim landed; its reply is lost.
            *self
                .shared
                .down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + down);
            return Err(StoreError::unavailable(
                "connection lost (simulated; the claim was applied)",
            ));
        }
        if planned.die_after {
            self.die().await;
        }
        self.gate().await;
        Ok(tasks)
    }
    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        self.write(self.inner().renew_leases(worker, leases, now, until))
            .await
    }
    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.read(self.inner().announce_worker(worker)).await
    }
    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()> {
        self.read(self.inner().retire_worker(worker)).await
    }
    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()> {
        // Not a counted write: it only adjusts the crash-loop count, and
        // counting it would move every write point of a recorded plan.
        self.read(self.inner().forgive_takeover(invocation, epoch))
            .await
    }
    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        self.read(self.inner().inbox(invocation)).await
    }
    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()> {
        self.write(self.inner().commit(turns)).await
    }
}

#[async_trait]
impl SignalStore for SimBackend {
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        self.read(
            self.inner()
                .send_signal_keyed(execution, name, payload, key, now),
        )
        .await
    }
    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        self.read(self.inner().pending_signals(execution, names))
            .await
    }
}

#[async_trait]
impl InspectStore for SimBackend {
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        self.read(self.inner().list_tasks(filter)).await
    }
    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>> {
        self.read(self.inner().task(invocation)).await
    }
    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.read(self.inner().workers()).await
    }
    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>> {
        self.read(self.inner().task_failures(invocation)).await
    }
    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats> {
        self.read(self.inner().stats(now)).await
    }
}
