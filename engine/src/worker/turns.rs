//! The turn loop's effects: drives a running invocation's code, applies
//! what arrived for it (deliveries, signals, due timers, hand-offs), stores
//! each turn in one fenced commit, and waits; after a failed storage call
//! it recovers ([`recovery`](super::recovery)) or stops. Which effect runs
//! when is decided by [`TurnLoop`](super::turn_loop::TurnLoop).

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use stent_journal::event::Event;
use stent_journal::pause::PauseReport;
use stent_journal::store::{SignalId, TaskDisposition, TurnCommit};
use stent_journal::{ExecutionId, Failure, InvocationId, LeaseEpoch, Payload, Seq, Timestamp};
use stent_replay::{DriverError, Outstanding, Status};
use tracing::Instrument;

use super::answer::Answer;
use super::turn_end::{TurnEnd, Unstored};
use super::turn_loop::{Exit, Next, Progress, Seen, Stay, Stored, TurnLoop, Wake};
use super::{
    Cached, Core, Ended, Inline, Running, STICKY_CAPACITY, Source, TurnError, UnstoredEnd, Waiting,
    recovery, report_of_stop,
};
use crate::hub::Handoff;

/// An answer that arrived for the code, and where it came from (`None`: a
/// delivery that does not decode, consumed without being applied).
type Arrival = (Option<Event>, Source);

/// A status of the code that ends its run here.
enum CodeEnd {
    /// It returned.
    Finished(Result<Payload, Failure>),
    /// It cannot go on.
    Stopped(DriverError),
}

/// A child's result handed over in-process, as an arrival.
fn handed_over(h: Handoff) -> Arrival {
    (Some(h.resolution.clone()), Source::Handoff(Box::new(h)))
}

impl Core {
    pub(super) async fn drive(self: Arc<Self>, r: Running, check_remote: bool) {
        let span = tracing::info_span!(
            "stent.invocation",
            execution = %r.execution,
            invocation = %r.invocation,
            function = r.function(),
            worker = %self.id,
        );
        self.drive_in_span(r, check_remote).instrument(span).await
    }

    /// Runs `r` through [`TurnLoop`], carrying out each effect it asks for
    /// until it exits.
    pub(super) async fn drive_in_span(self: Arc<Self>, mut r: Running, check_remote: bool) {
        self.inner.metrics.invocation_started(r.function());
        let (mut machine, mut next) =
            TurnLoop::new::<CodeEnd, UnstoredEnd>(self.poll, check_remote);
        loop {
            let seen: Seen<Arrival, CodeEnd, UnstoredEnd> = match next {
                Next::Gate => match self.idempotency_gate(&mut r).await {
                    Ok(gate) => Seen::Gated(gate),
                    Err(e) => Seen::Failed(e),
                },
                Next::Check => Seen::Checked {
                    lease_lost: r.lost(),
                    deadline_passed: r.deadline.is_some_and(|d| d <= self.now()),
                    kept_end: r.unstored_end.take(),
                },
                Next::TimeOut => {
                    self.time_out(r.execution, r.deadline).await;
                    Seen::Ended(Ended::Done)
                }
                Next::FinishKept(end) => {
                    Seen::ended(self.finish_keeping(&mut r, end.out, true).await)
                }
                Next::Advance => Seen::Advanced(self.advance(&mut r).await),
                Next::End(status) => Seen::ended(self.end_with(&mut r, status).await),
                Next::Gather => {
                    let mut arrived = Vec::new();
                    while let Ok(h) = r.residence.handoffs.try_recv() {
                        arrived.push(handed_over(h));
                    }
                    Seen::Gathered(arrived)
                }
                Next::Apply(arrival) => match self.apply(&mut r, arrival).await {
                    Ok(None) => Seen::Applied,
                    Ok(Some(ended)) => Seen::Ended(ended),
                    Err(e) => Seen::Failed(e),
                },
                Next::Collect { read_storage } => {
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
                    match self.collect(waiting, read_storage).await {
                        Ok(found) => {
                            r.signals_fetched_before = r.driver.next_seq();
                            Seen::Collected(found)
                        }
                        Err(e) => Seen::Failed(e),
                    }
                }
                Next::Cache => match self.answer_from_cache(&mut r).await {
                    Ok(answered) => Seen::Cached(answered),
                    Err(e) => Seen::Failed(e),
                },
                Next::Store { behind } => match self.store_turn(&mut r, behind).await {
                    Ok(Ok(stored)) => Seen::Stored(stored),
                    Ok(Err(ended)) => Seen::Ended(ended),
                    Err(e) => Seen::Failed(e),
                },
                Next::Wait { delay, stay } => Seen::Woke(self.wait(&mut r, delay, stay).await),
                Next::Recover { message, gating } => {
                    if gating {
                        tracing::warn!(invocation = %r.invocation, %message, "idempotency check failed");
                    } else {
                        tracing::warn!(invocation = %r.invocation, %message, "turn failed; re-reading the lease and the journal");
                    }
                    Seen::Recovered(self.recover_or_stop(&mut r).await)
                }
                Next::Exit(exit) => {
                    self.exit(r, exit);
                    return;
                }
            };
            next = machine.next(seen);
        }
    }

    /// Leaves `r` as [`Exit`] says.
    fn exit(&self, r: Running, exit: Exit) {
        match exit {
            Exit::Release => self.release(r.invocation, r.epoch),
            Exit::LeaseGone => {
                tracing::warn!(invocation = %r.invocation, "lease lost; dropping the invocation");
                self.lease_gone(r.invocation, r.epoch);
                self.release(r.invocation, r.epoch);
            }
            Exit::Park => {
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
            }
        }
    }

    /// After a storage fault: waits until the lease and the journal are
    /// read again ([`recovery`]) and replaces everything `r` held in
    /// memory with the replayed journal. False if `r` must stop instead.
    pub(super) async fn recover_or_stop(&self, r: &mut Running) -> bool {
        let lost = r.residence.lost.clone();
        let kept_end = r.unstored_end.as_ref().map(|end| end.journal_len);
        match self.recover(r.invocation, r.epoch, &lost, kept_end).await {
            Ok((driver, keep_end)) => {
                if !keep_end {
                    r.unstored_end = None;
                }
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
    pub(super) async fn pause_unrunnable(
        &self,
        invocation: InvocationId,
        execution: ExecutionId,
        epoch: LeaseEpoch,
        report: String,
    ) {
        tracing::error!(%invocation, %report, "journal cannot be run; pausing the execution");
        let commit = TurnCommit::bare(
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

    /// Polls the code (or takes what its first poll, made before this
    /// task started, returned).
    async fn advance(&self, r: &mut Running) -> Progress<CodeEnd> {
        let status = match r.first_status.take() {
            Some(status) => status,
            None => {
                r.driver.set_now(self.now());
                let waker = current_waker().await;
                r.driver
                    .advance(&mut std::task::Context::from_waker(&waker))
            }
        };
        match status {
            Status::Blocked => Progress::Blocked,
            Status::Behind => Progress::Behind,
            Status::Finished(out) => Progress::Ends(CodeEnd::Finished(out)),
            Status::Stopped(error) => Progress::Ends(CodeEnd::Stopped(error)),
        }
    }

    /// Ends the run for a status of the code that ends it: its outcome is
    /// stored, or the execution paused.
    async fn end_with(self: &Arc<Self>, r: &mut Running, end: CodeEnd) -> Result<Ended, TurnError> {
        match end {
            CodeEnd::Finished(out) => self.finish_keeping(r, out, false).await,
            CodeEnd::Stopped(DriverError::Aborted { message, .. }) => {
                self.finish_keeping(r, Err(Failure::Aborted { message }), true)
                    .await
            }
            CodeEnd::Stopped(other) => {
                let report = report_of_stop(r, &other);
                self.pause(r, report).await?;
                Ok(Ended::Done)
            }
        }
    }

    /// Applies one arrived answer to the code ([`Answer`] decides how).
    /// `Some` if that ended the run (the execution was paused).
    async fn apply(
        self: &Arc<Self>,
        r: &mut Running,
        (event, source): Arrival,
    ) -> Result<Option<Ended>, TurnError> {
        // The code may have stopped waiting for it meanwhile (a lost
        // race): then it is not journaled.
        let waited = event
            .as_ref()
            .and_then(Event::resolves)
            .and_then(|seq| r.driver.outstanding_at(seq));
        let answer = Answer::of(
            source.origin(),
            event.as_ref(),
            waited.as_ref(),
            |seq, payload| r.driver.check_signal(seq, payload),
        );
        let (consume, resolve) = match answer {
            Answer::SetAside(set_aside) => {
                let id = set_aside.id;
                let report = set_aside.report(r.execution, r.invocation);
                self.pause_setting_aside(r, report, Some(id)).await?;
                return Ok(Some(Ended::Done));
            }
            Answer::HandBack => {
                if let Source::Handoff(h) = source {
                    // Not ours to journal: the child delivers on its own.
                    let _ = h.done.send(Err("no outstanding call".into()));
                }
                return Ok(None);
            }
            Answer::Take { consume, resolve } => (consume, resolve),
        };
        if consume {
            match source {
                Source::Inbox(id) => r.consumed_inbox.push(id),
                Source::Signal(id) => r.consumed_signals.push(id),
                Source::Handoff(h) => r.handed_off.push(*h),
                Source::Timer => {}
            }
        }
        if resolve
            && let Some(event) = event
            && let Err(e) = r.driver.resolve(event)
        {
            let report = report_of_stop(r, &e);
            self.pause(r, report).await?;
            return Ok(Some(Ended::Done));
        }
        Ok(None)
    }

    /// Nothing more can be applied: stores the turn if anything in memory
    /// needs it, starts the children it created, and says how the
    /// invocation waits (`Ok(Err(_))`: the run ended here, parked or
    /// paused).
    async fn store_turn(
        self: &Arc<Self>,
        r: &mut Running,
        behind: bool,
    ) -> Result<Result<Stored, Ended>, TurnError> {
        let now = self.now();
        let end = TurnEnd::of(
            &r.driver.outstanding(),
            behind,
            self.draining(),
            self.sticky_timer,
            r.deadline,
            now,
        );
        if !end.io_wait {
            r.slot = None;
        }
        let stay = end.stay;
        let new_events = r.driver.take_new_events();
        let must_commit = end.must_commit(Unstored {
            events: !new_events.is_empty(),
            consumed: !r.consumed_inbox.is_empty() || !r.consumed_signals.is_empty(),
            results: !r.handed_off.is_empty() || r.deferred.is_some(),
            checkpoint: r.needs_checkpoint,
        });
        if must_commit {
            let (spawn, mut local) = self.plan_children(r, &new_events, now)?;
            let has_remote_children = spawn.iter().any(|s| s.lease.is_none());
            let one_child = spawn.len() == 1;
            if let (false, Some(t)) = (stay, end.run_at) {
                self.note_due(t);
            }
            let disposition = end.disposition(now, self.lease);
            let commit = r.turn(now, new_events, spawn, disposition)?;
            // A lone step started here may return in its first poll; its
            // end then rides along with a commit of this invocation instead
            // of costing one of its own (see `inline`).
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
            // child): a step never starts before every result before it is
            // stored, so a crash never runs a step again once a later one
            // has begun.
            let results_in_memory = r.deferred.is_some() || !r.handed_off.is_empty();
            let lone_step = match lone_step {
                Some(step) if !results_in_memory => {
                    match self.run_or_recall(r, step, now, &waker)? {
                        Inline::Returned(step) => {
                            return self.keep_returned(r, Some(commit), step).await;
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
            // Results were waiting in memory: the step runs now that they
            // and the turn scheduling it are stored.
            if let Some(step) = lone_step {
                match self.run_or_recall(r, step, self.now(), &waker)? {
                    Inline::Returned(step) => {
                        return self.keep_returned(r, None, step).await;
                    }
                    Inline::Pending(step) => self.start_children(vec![step]),
                }
            }
            if has_remote_children || !stay {
                self.inner.hub.work.notify_waiters();
            }
            if !stay {
                return Ok(Err(Ended::Parked));
            }
        }
        let until = |t: Timestamp| {
            Duration::from_millis(t.millis().saturating_sub(now.millis()).max(0) as u64)
        };
        Ok(Ok(Stored::Stay(Stay {
            timer_in: end.next_timer.map(until),
            deadline_in: r.deadline.map(until),
            io_wait: end.io_wait,
        })))
    }

    /// Waits, at most `delay`, for what may let the code go on.
    async fn wait(&self, r: &mut Running, delay: Duration, stay: Stay) -> Wake<Arrival> {
        let mut drain = self.drain.clone();
        let woken = r.driver.wake_flag();
        tokio::select! {
            _ = tokio::time::sleep(stay.deadline_in.unwrap_or_default()), if stay.deadline_in.is_some() => Wake::Other,
            _ = r.residence.notify.notified() => Wake::Notified,
            h = r.residence.handoffs.recv(), if r.residence.handoffs_open => match h {
                Some(h) => Wake::Handoff(handed_over(h)),
                // Another claim of this invocation replaced our
                // registration; children now deliver through storage.
                None => {
                    r.residence.handoffs_open = false;
                    Wake::HandoffsClosed
                }
            },
            _ = tokio::time::sleep(delay) => Wake::Slept,
            _ = drain.wait_for(|d| *d), if !stay.io_wait => Wake::Other,
            _ = poll_fn(|_| if woken.is_set() { Poll::Ready(()) } else { Poll::Pending }) => Wake::Other,
        }
    }

    /// Answers available now: deliveries, signals, due timers.
    pub(super) async fn collect(
        &self,
        r: Waiting<'_>,
        check_remote: bool,
    ) -> Result<Vec<Arrival>, TurnError> {
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
}

/// The waker of the task this is awaited in.
pub(super) async fn current_waker() -> std::task::Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}
