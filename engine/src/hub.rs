//! In-process wake-ups and hand-offs. Wake-ups only make things faster:
//! every waiter also polls the backend with backoff, so a lost wake-up costs
//! latency, never correctness. A hand-off lets a child that finished in this
//! process give its result straight to its resident parent, which commits
//! both in one transaction; if the parent cannot, the child commits alone and
//! delivers through the backend as usual.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use stent_journal::event::Event;
use stent_journal::store::{LeaseGrant, Routing, TurnCommit};
use stent_journal::{ExecutionId, InvocationId, Timestamp};
use tokio::sync::{Notify, mpsc, oneshot};

/// A finished child's turn and result, offered to its resident parent.
pub(crate) struct Handoff {
    /// The child's final turn, without a delivery (the parent journals the
    /// result itself).
    pub commit: TurnCommit,
    /// The resolution event for the parent's journal.
    pub resolution: Event,
    /// Answered once the parent committed both (or could not).
    pub done: oneshot::Sender<Result<(), String>>,
}

struct Resident {
    execution: ExecutionId,
    notify: Arc<Notify>,
    lost: Arc<AtomicBool>,
    handoffs: mpsc::UnboundedSender<Handoff>,
}

/// A worker running in this process that can take a new execution at
/// dispatch time, saving the claim round trip.
pub(crate) trait LocalClaimer: Send + Sync {
    /// Reserves a slot for a new root of `function`, if this worker serves it.
    fn reserve(
        self: Arc<Self>,
        function: &str,
        routing: &Routing,
        now: Timestamp,
    ) -> Option<Reservation>;
}

/// A slot reserved on a local worker for a dispatch: create the execution
/// leased with `grant`, then call `start` (dropping it frees the slot).
pub(crate) struct Reservation {
    pub grant: LeaseGrant,
    pub start: Box<dyn FnOnce(ExecutionId, Event, Option<Timestamp>) + Send>,
}

/// Wake-ups shared by an executor and the workers it runs.
#[derive(Default)]
pub(crate) struct Hub {
    /// Workers serving in this process, by registration number.
    local_workers: Mutex<Vec<(u64, Arc<dyn LocalClaimer>)>>,
    next_registration: std::sync::atomic::AtomicU64,
    /// New runnable work may exist (dispatch, spawned children, a parked task woken).
    pub work: Notify,
    /// `wait_for` callers, by the execution they wait for.
    watchers: Mutex<HashMap<ExecutionId, Arc<Notify>>>,
    /// Invocations resident in a worker of this process, by id.
    residents: Mutex<HashMap<InvocationId, Resident>>,
}

impl Hub {
    /// Registers a resident invocation: its wake-up handle and the receiving
    /// end of its hand-offs.
    pub fn add_resident(
        &self,
        invocation: InvocationId,
        execution: ExecutionId,
        lost: Arc<AtomicBool>,
    ) -> (Arc<Notify>, mpsc::UnboundedReceiver<Handoff>) {
        let notify = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(
            invocation,
            Resident {
                execution,
                notify: notify.clone(),
                lost,
                handoffs: tx,
            },
        );
        (notify, rx)
    }

    /// Stops every resident invocation of an execution that was cancelled
    /// or timed out: they drop their code at their next wake-up.
    pub fn stop_execution(&self, execution: ExecutionId) {
        for r in self.lock().values() {
            if r.execution == execution {
                r.lost.store(true, Ordering::SeqCst);
                r.notify.notify_one();
            }
        }
    }

    /// Forgets a resident registration — only the one made with `notify`,
    /// so a later registration of the same invocation (a takeover by
    /// another worker of this process) stays.
    pub fn remove_resident(&self, invocation: InvocationId, notify: &Arc<Notify>) {
        let mut residents = self.lock();
        if residents
            .get(&invocation)
            .is_some_and(|r| Arc::ptr_eq(&r.notify, notify))
        {
            residents.remove(&invocation);
        }
    }

    /// Wakes a resident invocation (a delivery for it arrived). False if it
    /// is not resident in this process.
    pub fn wake_invocation(&self, invocation: InvocationId) -> bool {
        match self.lock().get(&invocation) {
            Some(r) => {
                r.notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Offers a finished child's result to its resident parent. False if
    /// the parent is not resident here (the hand-off is dropped, which
    /// answers its `done` with an error).
    pub fn hand_off(&self, parent: InvocationId, handoff: Handoff) -> bool {
        match self.lock().get(&parent) {
            Some(r) => r.handoffs.send(handoff).is_ok(),
            None => false,
        }
    }

    /// Wakes every resident invocation of an execution (a signal arrived).
    pub fn wake_execution(&self, execution: ExecutionId) {
        for r in self.lock().values() {
            if r.execution == execution {
                r.notify.notify_one();
            }
        }
    }

    /// A handle woken when `execution` ends (or pauses) in this process.
    pub fn watch(&self, execution: ExecutionId) -> Arc<Notify> {
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(execution)
            .or_default()
            .clone()
    }

    /// Drops the watch handle of `execution` once no waiter holds it.
    pub fn unwatch(&self, execution: ExecutionId) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers
            .get(&execution)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            watchers.remove(&execution);
        }
    }

    /// Wakes the waiters of `execution`: it ended or paused.
    pub fn execution_finished(&self, execution: ExecutionId) {
        let notify = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&execution)
            .cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Registers a worker of this process for dispatch-time claims.
    pub fn add_local_worker(&self, worker: Arc<dyn LocalClaimer>) -> u64 {
        let id = self
            .next_registration
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.workers().push((id, worker));
        id
    }

    /// Forgets a registered worker (it is draining).
    pub fn remove_local_worker(&self, registration: u64) {
        self.workers().retain(|(id, _)| *id != registration);
    }

    /// A slot on a local worker for a new execution, if one serves it.
    pub fn reserve(
        &self,
        function: &str,
        routing: &Routing,
        now: Timestamp,
    ) -> Option<Reservation> {
        let workers: Vec<Arc<dyn LocalClaimer>> =
            self.workers().iter().map(|(_, w)| w.clone()).collect();
        workers
            .into_iter()
            .find_map(|w| w.reserve(function, routing, now))
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<dyn LocalClaimer>)>> {
        self.local_workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InvocationId, Resident>> {
        self.residents.lock().unwrap_or_else(|p| p.into_inner())
    }
}
