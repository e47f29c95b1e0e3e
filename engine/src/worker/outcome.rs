//! Outcomes: how an invocation ends — finished (its result delivered to its
//! parent or ending the execution), retried by its policy, dead-lettered,
//! timed out at the execution's deadline, or paused with a report.

use std::sync::Arc;

use stent_journal::event::Event;
use stent_journal::pause::PauseReport;
use stent_journal::store::{
    Delivery, ExecutionOutcome, ExecutionStatus, SignalId, TaskDisposition, TurnCommit,
};
use stent_journal::{CallKey, ExecutionId, Failure, Payload, Seq, Timestamp};
use stent_replay::DriverError;

use crate::registry::FunctionEntry;

use super::{Core, Ended, Running, TurnError, UnstoredEnd, call_key_of, merged_turns};

impl Core {
    /// [`Core::finish`], keeping `out` in `r` if the commit fails and would
    /// have stored nothing of the code but its end (a step's body that
    /// returned): the code is not run again after the fault, its end is
    /// committed again. The journal read after the fault decides: if the
    /// failed commit landed, it ends with the end (nothing more runs); if
    /// it is as long as before, the kept end is still the code's outcome;
    /// anything else and the code replays ([`Core::recover_or_stop`]).
    /// `append_terminal`: the driver's journal does not hold the end.
    pub(super) async fn finish_keeping(
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
        let journal_len = r.driver.journal_len() - usize::from(!append_terminal);
        match self.finish(r, &out, append_terminal).await {
            Ok(()) => Ok(Ended::Done),
            Err(TurnError::Retry(message)) => {
                r.unstored_end = only_the_end.then_some(UnstoredEnd { journal_len, out });
                Err(TurnError::Retry(message))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn finish(
        self: &Arc<Self>,
        r: &mut Running,
        out: &std::result::Result<Payload, Failure>,
        append_terminal: bool,
    ) -> Result<(), TurnError> {
        let now = self.now();
        if let Err(failure) = out
            && self
                .retry_or_dead_letter(r, failure, append_terminal)
                .await?
        {
            return Ok(());
        }
        let mut events = r.driver.take_new_events();
        let terminal = match out {
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
                event: encode(&resolution(p.seq, out))?,
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
        let cache_put = cached_result(r.entry.as_deref(), &r.driver.started_event(), out);
        let (idempotency_done, idempotency_released) = match (out, &r.idempotency_key) {
            (Ok(value), Some(key)) => (vec![(key.clone(), value.as_bytes().to_vec())], Vec::new()),
            (Err(_), Some(key)) => (Vec::new(), vec![key.clone()]),
            (_, None) => (Vec::new(), Vec::new()),
        };
        let finish = TaskDisposition::Finish {
            deliver: None,
            execution,
        };
        let mut commit = TurnCommit {
            cache_put,
            idempotency_done,
            idempotency_released,
            ..r.turn(now, events, spawn, finish)?
        };
        r.slot = None;
        let handed_off = match (&deliver, r.handed_off.is_empty() && local.is_empty()) {
            // A plain finished child with a resident parent here: hand the
            // result over, so parent and child commit in one transaction.
            (Some(d), true) => {
                let turns = merged_turns(r.deferred.clone(), commit.clone());
                let handed_off = self.hand_off(d.parent, turns, out, r.parent).await;
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
        match out {
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
    pub(super) async fn retry_or_dead_letter(
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
        let commit = r.turn(now, events, spawn, disposition)?;
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

    /// The execution ran past its deadline: end it as timed out.
    pub(super) async fn time_out(&self, execution: ExecutionId, deadline: Option<Timestamp>) {
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

    pub(super) async fn pause(
        self: &Arc<Self>,
        r: &mut Running,
        report: PauseReport,
    ) -> Result<(), TurnError> {
        self.pause_setting_aside(r, report, None).await
    }

    /// Pauses the execution of `r` with `report`; the signal `set_aside`,
    /// if any, is marked consumed without being journaled (it does not fit
    /// the wait it was meant for).
    pub(super) async fn pause_setting_aside(
        self: &Arc<Self>,
        r: &mut Running,
        report: PauseReport,
        set_aside: Option<SignalId>,
    ) -> Result<(), TurnError> {
        tracing::error!(execution = %r.execution, invocation = %r.invocation, report = %report.text, "pausing execution");
        let commit = TurnCommit {
            consumed_signals: set_aside.into_iter().collect(),
            ..TurnCommit::bare(
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
pub(super) const FAILURE_TEXT_LIMIT: usize = 4096;

/// A failure's text cut to [`FAILURE_TEXT_LIMIT`] bytes on a character
/// boundary, marked when cut.
pub(super) fn cut_failure(text: &str) -> String {
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
pub(super) fn report_of_stop(r: &Running, error: &DriverError) -> PauseReport {
    let function = match r.driver.started_event() {
        Event::Started { function, .. } => function,
        _ => String::new(),
    };
    crate::debugger::pause::report_of_stop(r.execution, &function, error, &r.driver.journal())
}

/// The cache entry a finished invocation of a `cached` function leaves.
pub(super) fn cached_result(
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
pub(super) fn resolution(scheduled: Seq, out: &std::result::Result<Payload, Failure>) -> Event {
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
