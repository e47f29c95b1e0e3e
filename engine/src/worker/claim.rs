//! Claiming: the claim loop that leases due tasks (waiting with backoff,
//! woken by notifications and freed slots), the resident cache of parked
//! drivers, and loading a claimed invocation's journal into a driver. Also
//! the in-process claimer the executor uses to start a dispatch here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stent_journal::event::{Event, ParentLink};
use stent_journal::store::{
    ClaimRequest, ClaimedTask, JournalRow, LeaseGrant, Routing, TaskDisposition, TurnCommit,
};
use stent_journal::{ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp};
use stent_replay::{Driver, DriverError};
use tokio::sync::watch;

use crate::hub::{LocalClaimer, Reservation};

use super::{
    Cached, Core, DEFAULT_CRASH_LIMIT, LeaseState, LoadError, LocalStart, Residence, Running, Slot,
};

impl Core {
    pub(super) async fn claim_loop(self: Arc<Self>, mut drain: watch::Receiver<bool>) {
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

    pub(super) fn spawn_tracked<F>(self: &Arc<Self>, fut: F)
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

    pub(super) async fn wait_idle(&self) {
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

    /// Remembers that a task this worker released becomes runnable at `at`.
    pub(super) fn note_due(&self, at: Timestamp) {
        let mut due = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        *due = Some(due.map_or(at, |d| d.min(at)));
    }

    /// How long until the earliest remembered due time, if it comes within
    /// `horizon`; forgets it once it has come (the claim then finds the task).
    pub(super) fn take_due_before(&self, horizon: Duration) -> Option<Duration> {
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

    pub(super) fn lock_leases(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<InvocationId, LeaseState>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock_sticky(&self) -> std::sync::MutexGuard<'_, HashMap<InvocationId, Cached>> {
        self.sticky.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a held lease; returns the wake-up handle and the lost flag.
    pub(super) fn hold(
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
    pub(super) fn release(&self, invocation: InvocationId, epoch: LeaseEpoch) {
        let mut leases = self.lock_leases();
        if leases.get(&invocation).is_some_and(|l| l.epoch == epoch)
            && let Some(lease) = leases.remove(&invocation)
        {
            self.inner.hub.remove_resident(invocation, &lease.notify);
        }
    }

    /// Runs a claimed task; `journal` is its whole journal when the claim
    /// returned it (else it is read here).
    pub(super) async fn start_claimed(
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
            let commit = TurnCommit::bare(
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
    pub(super) async fn load(
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
