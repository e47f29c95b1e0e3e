//! In-process wake-ups and hand-offs, and the bridge to the executor's
//! [`NotificationBackend`]. Wake-ups only make things faster: every waiter
//! also polls the backend with backoff, so a lost wake-up costs latency,
//! never correctness. A hand-off lets a child that finished in this process
//! give its result straight to its resident parent, which commits both in
//! one transaction; if the parent cannot, the child commits alone and
//! delivers through the backend as usual.
//!
//! Work, signal and end-of-execution wake-ups go through [`Hub::publish`]:
//! delivered here directly (unless the notification backend is
//! `NoNotifications`) and handed to the backend for the other processes,
//! whose messages come back through [`Hub::receive`].

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use stent_journal::event::Event;
use stent_journal::store::{ExecutionOutcome, LeaseGrant, Routing, TurnCommit};
use stent_journal::{ExecutionId, InvocationId, Timestamp};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::notify::{self, Notification, NotificationBackend, NotificationSink};

/// Due times of remote retries this process keeps a timer for, at most
/// (later ones are found by polling).
const MAX_DUE_TIMERS: usize = 256;

/// A finished child's turn and result, offered to its resident parent.
pub(crate) struct Handoff {
    /// The child's final turn, without a delivery (the parent journals the
    /// result itself), with the turns that must be stored with it (an inline
    /// step's end and the turn that scheduled it, see `worker::inline`).
    pub commits: Vec<TurnCommit>,
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

/// Wakes idle workers when claimable work may exist.
pub(crate) struct WorkBell {
    local: Notify,
    hub: Weak<Hub>,
}

impl WorkBell {
    /// Completes at the next wake-up of this process's idle workers
    /// (enable it before looking for work, so none is missed).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.local.notified()
    }

    /// New claimable work may exist: wakes the idle workers of this
    /// process, and of the others through the notification backend.
    pub fn notify_waiters(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.publish(Notification::Work { due: None });
        }
    }
}

/// Wake-ups shared by an executor and the workers it runs.
pub(crate) struct Hub {
    /// Identifies this executor's messages, which it ignores when they
    /// come back from the notification backend.
    origin: u64,
    notifier: Arc<dyn NotificationBackend>,
    /// Whether the notifier was started (it needs a runtime).
    started: AtomicBool,
    me: Weak<Hub>,
    clock: Arc<dyn Clock>,
    /// Due times of remote retries with a timer running.
    due_timers: Mutex<BTreeSet<Timestamp>>,
    /// Workers serving in this process, by registration number.
    local_workers: Mutex<Vec<(u64, Arc<dyn LocalClaimer>)>>,
    next_registration: std::sync::atomic::AtomicU64,
    /// New runnable work may exist (dispatch, spawned children, a parked task woken).
    pub work: WorkBell,
    /// `wait_for` callers, by the execution they wait for.
    watchers: Mutex<HashMap<ExecutionId, Watch>>,
    /// Invocations resident in a worker of this process, by id.
    residents: Mutex<HashMap<InvocationId, Resident>>,
}

/// The `wait_for` callers of one execution.
#[derive(Default)]
struct Watch {
    notify: Arc<Notify>,
    /// How it ended, if a worker of this process ended it (and committed
    /// that) while they waited: they need not read it back.
    outcome: Option<ExecutionOutcome>,
}

impl Hub {
    pub fn new(notifier: Arc<dyn NotificationBackend>, clock: Arc<dyn Clock>) -> Arc<Hub> {
        Arc::new_cyclic(|me: &Weak<Hub>| Hub {
            origin: ExecutionId::new_random().as_uuid().as_u64_pair().0,
            notifier,
            started: AtomicBool::new(false),
            me: me.clone(),
            clock,
            due_timers: Mutex::default(),
            local_workers: Mutex::default(),
            next_registration: Default::default(),
            work: WorkBell {
                local: Notify::new(),
                hub: me.clone(),
            },
            watchers: Mutex::default(),
            residents: Mutex::default(),
        })
    }

    /// Starts the notification backend once, from inside a runtime.
    pub(crate) fn ensure_started(&self) {
        if self.started.load(Ordering::Acquire) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            self.notifier.start(NotificationSink {
                hub: self.me.clone(),
            });
        }
    }

    /// Wakes whoever `n` concerns, here and in the other processes.
    /// Waits until the notifier handed over what was published so far.
    pub(crate) async fn flush(&self) {
        self.notifier.flush().await;
    }

    pub(crate) fn publish(&self, n: Notification) {
        self.ensure_started();
        if self.notifier.in_process() {
            self.deliver(n, false);
        }
        self.notifier.publish(&notify::encode(self.origin, &n));
    }

    /// A message from the notification backend.
    pub(crate) fn receive(&self, message: &str) {
        match notify::decode(message) {
            Some((origin, _)) if origin == self.origin => {}
            Some((_, n)) => self.deliver(n, true),
            None => tracing::debug!(message, "ignoring an unknown notification"),
        }
    }

    fn deliver(&self, n: Notification, remote: bool) {
        match n {
            Notification::Work { due: None } => self.work.local.notify_waiters(),
            // A worker of this process remembers the due times of the tasks
            // it released itself.
            Notification::Work { due: Some(_) } if !remote => {}
            Notification::Work { due: Some(at) } => self.wake_at(at),
            Notification::Signal { execution } => {
                self.wake_execution(execution);
                self.work.local.notify_waiters();
            }
            Notification::Finished { execution } => self.wake_watchers(execution),
        }
    }

    /// Wakes everything that waits on a notification — idle workers,
    /// `wait_for` callers, resident invocations waiting for a signal — so
    /// each checks storage once: notifications sent while the transport was
    /// not listening are lost, and this is all they would have caused.
    pub(crate) fn resync(&self) {
        self.work.local.notify_waiters();
        let watchers: Vec<Arc<Notify>> = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|w| w.notify.clone())
            .collect();
        for n in watchers {
            n.notify_waiters();
        }
        for r in self.lock().values() {
            r.notify.notify_one();
        }
    }

    /// Wakes the idle workers here at `at` (a task another process
    /// scheduled to retry then).
    fn wake_at(&self, at: Timestamp) {
        let wait = at.millis().saturating_sub(self.clock.now().millis());
        if wait <= 0 {
            self.work.local.notify_waiters();
            return;
        }
        {
            let mut timers = self.due_timers.lock().unwrap_or_else(|p| p.into_inner());
            if timers.len() >= MAX_DUE_TIMERS || !timers.insert(at) {
                return;
            }
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            if let Some(hub) = me.upgrade() {
                hub.due_timers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&at);
                hub.work.local.notify_waiters();
            }
        });
    }

    /// A task was scheduled to retry at `at`: workers of other processes
    /// wake then too.
    pub fn work_due(&self, at: Timestamp) {
        self.publish(Notification::Work { due: Some(at) });
    }

    /// A signal was sent to `execution`: wakes its resident invocations and
    /// idle workers (the signal may have made a parked task ready).
    pub fn signal_sent(&self, execution: ExecutionId) {
        self.publish(Notification::Signal { execution });
    }

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

    /// True if `invocation` is resident in a worker of this process.
    pub fn is_resident(&self, invocation: InvocationId) -> bool {
        self.lock().contains_key(&invocation)
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
    fn wake_execution(&self, execution: ExecutionId) {
        for r in self.lock().values() {
            if r.execution == execution {
                r.notify.notify_one();
            }
        }
    }

    /// A handle woken when `execution` ends (or pauses) in this process.
    pub fn watch(&self, execution: ExecutionId) -> Arc<Notify> {
        self.ensure_started();
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(execution)
            .or_default()
            .notify
            .clone()
    }

    /// How `execution` ended, if a worker of this process ended it while
    /// someone watched it (see [`Hub::execution_ended_here`]).
    pub fn outcome(&self, execution: ExecutionId) -> Option<ExecutionOutcome> {
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&execution)
            .and_then(|w| w.outcome.clone())
    }

    /// A worker of this process committed `execution`'s end: its waiters
    /// here get `outcome` without reading it back; then they and those
    /// elsewhere are woken as by [`Hub::execution_finished`].
    pub fn execution_ended_here(&self, execution: ExecutionId, outcome: ExecutionOutcome) {
        if let Some(w) = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&execution)
        {
            w.outcome = Some(outcome);
        }
        self.execution_finished(execution);
    }

    /// Drops the watch handle of `execution` once no waiter holds it.
    pub fn unwatch(&self, execution: ExecutionId) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers
            .get(&execution)
            .is_some_and(|w| Arc::strong_count(&w.notify) == 1)
        {
            watchers.remove(&execution);
        }
    }

    /// `execution` ended or paused: wakes its waiters, here and in the
    /// other processes.
    pub fn execution_finished(&self, execution: ExecutionId) {
        self.publish(Notification::Finished { execution });
    }

    fn wake_watchers(&self, execution: ExecutionId) {
        let notify = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&execution)
            .map(|w| w.notify.clone());
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Registers a worker of this process for dispatch-time claims.
    pub fn add_local_worker(&self, worker: Arc<dyn LocalClaimer>) -> u64 {
        self.ensure_started();
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
