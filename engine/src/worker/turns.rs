//! The turn loop: drives a running invocation's code, applies what arrived
//! for it (deliveries, signals, due timers, hand-offs), stores each turn in
//! one fenced commit, and waits; after a failed storage call it recovers
//! ([`recovery`](super::recovery)) or stops.

use std::collections::{HashSet, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use stent_journal::event::Event;
use stent_journal::pause::PauseReport;
use stent_journal::store::{SignalId, TaskDisposition, TurnCommit};
use stent_journal::{ExecutionId, Failure, InvocationId, LeaseEpoch, Payload, Seq};
use stent_replay::{DriverError, Outstanding, Status};
use tracing::Instrument;

use super::answer::Answer;
use super::turn_end::{TurnEnd, Unstored};
use super::{
    Cached, Core, Ended, Gate, Inline, Running, STICKY_CAPACITY, Source, TurnError, Waiting,
    recovery, report_of_stop,
};

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

    pub(super) async fn drive_in_span(self: Arc<Self>, mut r: Running, check_remote: bool) {
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

    /// Runs turns until the invocation finishes, parks, or stops.
    pub(super) async fn turns(
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
                            return Ok(Ended::Done);
                        }
                        Answer::HandBack => {
                            if let Source::Handoff(h) = source {
                                // Not ours to journal: the child delivers on its own.
                                let _ = h.done.send(Err("no outstanding call".into()));
                            }
                            continue;
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
            let (stay, next_timer) = (end.stay, end.next_timer);
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
                _ = drain.wait_for(|d| *d), if !end.io_wait => {}
                _ = poll_fn(|_| if woken.is_set() { Poll::Ready(()) } else { Poll::Pending }) => {}
            }
            check_remote = read_storage;
        }
    }

    /// Answers available now: deliveries, signals, due timers.
    pub(super) async fn collect(
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
}

/// The waker of the task this is awaited in.
pub(super) async fn current_waker() -> std::task::Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}
