//! Inline steps: a lone child a turn starts on this worker is polled once
//! right away, in the parent's task, before it gets a task of its own.
//!
//! Most steps need no durable effect and return in that poll. The step's
//! final turn and the parent's turn that scheduled it are then kept in
//! memory ([`Deferred`]) and stored with the parent's next commit, which
//! also journals the step's result in the parent. A one-step workflow so
//! costs one commit instead of two, and a step no task, channel or wake-up.
//!
//! Why the guarantees hold: nothing of the step is stored or visible
//! outside this process before that commit, and the commit holds both the
//! step's end and the parent's `CallCompleted`. A crash before it loses
//! both, and the parent calls the step again, as it would for any step that
//! was running (steps are at-least-once); a step journaled as completed
//! never runs again. A commit that fails while this worker lives (storage
//! lost the connection, or the reply) is no crash: the step's outcome is
//! kept until a commit stores it, and when the journal replayed after the
//! fault schedules the same call again, that outcome answers it without
//! running the body again ([`Core::run_or_recall`]). At most one such step result waits in memory per
//! invocation: a turn that finds one already waiting is stored first. And a
//! step is polled before its parent's turn is stored only if that turn
//! stores no earlier step's result (kept here, or handed over by a child):
//! a step never begins before the results of the steps before it are
//! stored, so once a step has begun, a crash never runs an earlier one
//! again.
//!
//! A step that does not return in its first poll (it awaits I/O or a
//! durable effect), returns a failure its retry policy may retry, panics,
//! starts calls of its own, or is idempotent, is started as a task of its
//! own with the polled driver, exactly as if it had not been polled here.
//! Until then the parent's task keeps polling it whenever it wakes, while
//! the parent's commit is in flight (see [`Core::commit_polling`]).

use std::sync::Arc;
use std::task::{Context, Waker};

use stent_journal::store::{TaskDisposition, TurnCommit};
use stent_journal::{Failure, LeaseEpoch, Payload, Timestamp};
use stent_replay::{Driver, Status};

use super::turn_loop::Stored;
use super::{
    Core, Ended, LocalStart, Running, TurnError, cached_result, report_of_stop, resolution,
    to_new_events,
};
use crate::registry::FunctionEntry;
use stent_journal::event::Event;

/// Turns applied in memory, stored with the invocation's next commit.
#[derive(Clone)]
pub(super) struct Deferred {
    /// The invocation's own turn that scheduled the step, if not yet stored;
    /// the next turn of the invocation is folded into it.
    pub own: Option<TurnCommit>,
    /// The final turns of steps that returned inline. Each is stored only
    /// with the parent turn journaling its result (it has no delivery).
    pub steps: Vec<TurnCommit>,
}

/// A child's driver after its first poll here.
pub(super) struct Prepared {
    pub driver: Driver,
    /// The poll's status if the code cannot be polled again (it returned or
    /// stopped); `None` if it waits and its task polls it again.
    pub status: Option<Status>,
}

/// A step that returned in its first poll.
#[derive(Clone)]
pub(super) struct Returned {
    /// Its `Started` event: what it was called with.
    pub started: Event,
    /// Its final turn, without a delivery.
    pub commit: TurnCommit,
    /// The event answering the parent's call.
    pub resolution: Event,
}

pub(super) enum Inline {
    /// The step returned: the parent journals the result itself.
    Returned(Returned),
    /// It goes on in a task of its own (with its polled driver, if any).
    Pending(LocalStart),
}

impl Core {
    /// Polls `step` once, here. See the module docs.
    pub(super) fn run_inline(
        self: &Arc<Self>,
        mut step: LocalStart,
        now: Timestamp,
        waker: &Waker,
    ) -> Result<Inline, TurnError> {
        let Some(link) = step.parent else {
            return Ok(Inline::Pending(step));
        };
        // Its task decides (it leaves it to a claim); an idempotent step
        // takes its key before its body runs, in its task.
        if now >= step.lease_until || step.entry.idempotency_key.is_some() {
            return Ok(Inline::Pending(step));
        }
        let started_at = tokio::time::Instant::now();
        let future = step.entry.invoke(step.args.clone());
        let mut driver = match self.new_driver(step.invocation, vec![step.started.clone()], future)
        {
            Ok(driver) => driver,
            // Its task reports it.
            Err(_) => return Ok(Inline::Pending(step)),
        };
        driver.set_now(now);
        let span = tracing::info_span!(
            "stent.invocation",
            execution = %step.execution,
            invocation = %step.invocation,
            function = step.entry.name,
            worker = %self.id,
        );
        let status = span.in_scope(|| driver.advance(&mut Context::from_waker(waker)));
        let out = match status {
            Status::Finished(out)
                if returns_here(&step.entry, &out) && driver.pending_new_calls().is_empty() =>
            {
                out
            }
            Status::Blocked | Status::Behind => {
                step.prepared = Some(Prepared {
                    driver,
                    status: None,
                });
                return Ok(Inline::Pending(step));
            }
            status => {
                step.prepared = Some(Prepared {
                    driver,
                    status: Some(status),
                });
                return Ok(Inline::Pending(step));
            }
        };
        let commit = TurnCommit {
            events: to_new_events(driver.take_new_events())?,
            cache_put: cached_result(Some(&step.entry), &step.started, &out),
            ..TurnCommit::bare(
                step.invocation,
                LeaseEpoch(1),
                now,
                TaskDisposition::Finish {
                    deliver: None,
                    execution: None,
                },
            )
        };
        let metrics = &self.inner.metrics;
        metrics.invocation_started(step.entry.name);
        match &out {
            Ok(_) => metrics.invocation_completed(step.entry.name, started_at.elapsed()),
            Err(_) => metrics.invocation_failed(step.entry.name, started_at.elapsed()),
        }
        Ok(Inline::Returned(Returned {
            started: step.started,
            commit,
            resolution: resolution(link.seq, &out),
        }))
    }

    /// Runs `step` inline ([`Core::run_inline`]), unless it is the step
    /// `r` ran last and whose result no commit has stored yet: after a
    /// commit that failed, the journal replayed from storage schedules the
    /// same call again, and the outcome it already had is reused. The
    /// first run's end was never visible outside this process, so nobody
    /// can tell; without this, storage that fails commit after commit while
    /// it answers reads would run the step's body once per failed commit.
    pub(super) fn run_or_recall(
        self: &Arc<Self>,
        r: &mut Running,
        step: LocalStart,
        now: Timestamp,
        waker: &Waker,
    ) -> Result<Inline, TurnError> {
        let same = |kept: &mut Returned| {
            kept.commit.invocation == step.invocation && kept.started == step.started
        };
        if let Some(mut kept) = r.unstored.take_if(same) {
            tracing::debug!(invocation = %step.invocation, "the step returned before a commit that failed; its outcome is reused");
            kept.commit.now = now;
            return Ok(Inline::Returned(kept));
        }
        self.run_inline(step, now, waker)
    }

    /// Commits the parent's turn while polling `step`, a step polled before
    /// that turn and still waiting, whenever it wakes. The step may hold
    /// something the commit needs (say the last pooled connection, taken by
    /// its own query): left unpolled until the commit returns, it would
    /// never give it back. If it returns meanwhile, its task starts with
    /// that outcome.
    pub(super) async fn commit_polling(
        &self,
        r: &mut Running,
        commit: TurnCommit,
        step: Option<&mut LocalStart>,
    ) -> Result<(), TurnError> {
        let Some(prepared) = step
            .and_then(|s| s.prepared.as_mut())
            .filter(|p| p.status.is_none())
        else {
            return self.commit_with_handoffs(r, commit).await;
        };
        let commit = self.commit_with_handoffs(r, commit);
        tokio::pin!(commit);
        std::future::poll_fn(|cx| {
            if prepared.status.is_none() && prepared.driver.woken() {
                prepared.driver.set_now(self.now());
                match prepared.driver.advance(cx) {
                    Status::Blocked | Status::Behind => {}
                    status => prepared.status = Some(status),
                }
            }
            commit.as_mut().poll(cx)
        })
        .await
    }

    /// Keeps a step that returned inline for the parent's next commit,
    /// with `own`, the parent's turn that scheduled it if that is not stored
    /// yet, and applies the step's result to the parent: the parent goes on
    /// ([`Stored::Again`]), or it diverged on the result and was paused.
    pub(super) async fn keep_returned(
        self: &Arc<Self>,
        r: &mut Running,
        own: Option<TurnCommit>,
        step: Returned,
    ) -> Result<Result<Stored, Ended>, TurnError> {
        r.unstored = Some(step.clone());
        r.deferred = Some(Deferred {
            own,
            steps: vec![step.commit],
        });
        match r.driver.resolve(step.resolution) {
            Ok(_) => Ok(Ok(Stored::Again)),
            Err(e) => {
                let report = report_of_stop(r, &e);
                self.pause(r, report).await?;
                Ok(Err(Ended::Done))
            }
        }
    }
}

/// True if `out` ends the step for good: a result, or a failure that is
/// neither retried by its policy nor a panic (which is dead-lettered).
fn returns_here(entry: &FunctionEntry, out: &Result<Payload, Failure>) -> bool {
    match out {
        Ok(_) => true,
        Err(Failure::Panic { .. }) => false,
        Err(_) => entry.retry_policy.is_none(),
    }
}
