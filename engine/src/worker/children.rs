//! Children: the invocations a turn's calls create, started here when a
//! slot is free (leased to this worker at creation), and the hand-off of a
//! finished child's commit to its resident parent, so both are stored in
//! one transaction.

use std::sync::Arc;

use stent_journal::event::{Event, ParentLink};
use stent_journal::store::{LeaseGrant, NewInvocation, StoreError, TurnCommit};
use stent_journal::{Failure, InvocationId, LeaseEpoch, Payload, Seq, Timestamp};
use tokio::sync::oneshot;

use crate::hub::Handoff;

use super::{Core, Deferred, LocalStart, Running, TurnError, resolution};

impl Core {
    /// Child invocations for new `CallScheduled` events; those this worker can
    /// run right away are leased to it at creation.
    pub(super) fn plan_children(
        self: &Arc<Self>,
        r: &Running,
        events: &[(Seq, Event)],
        now: Timestamp,
    ) -> Result<(Vec<NewInvocation>, Vec<LocalStart>), TurnError> {
        let mut spawn = Vec::new();
        let mut local = Vec::new();
        for (seq, event) in events {
            let Event::CallScheduled {
                function,
                version,
                args,
                child,
                ..
            } = event
            else {
                continue;
            };
            let entry = self.inner.registry.get(function).ok();
            let routing = entry
                .as_ref()
                .map(|e| e.routing.clone())
                .unwrap_or_default();
            let parent = ParentLink {
                invocation: r.invocation,
                seq: *seq,
            };
            let started = Event::Started {
                function: function.clone(),
                version: version.clone(),
                args: args.clone(),
                parent: Some(parent),
                forked_from: None,
            };
            let started_event = started
                .encode()
                .map_err(|e| TurnError::Retry(e.to_string()))?;
            // A call this worker cannot run: warn once if none can.
            if entry.is_none() || !self.serves(&routing) {
                self.check_served(function, &routing);
            }
            // Limited functions go through a claim, which enforces the limit.
            let slot = match &entry {
                Some(e)
                    if e.max_concurrent.is_none() && !self.draining() && self.serves(&routing) =>
                {
                    self.try_slot()
                }
                _ => None,
            };
            let lease = slot.as_ref().map(|_| LeaseGrant {
                worker: self.id.clone(),
                until: now.saturating_add(self.lease),
            });
            spawn.push(NewInvocation {
                invocation: *child,
                execution: r.execution,
                function: function.clone(),
                routing,
                run_at: now,
                started_event,
                lease,
            });
            if let (Some(slot), Some(entry)) = (slot, entry) {
                local.push(LocalStart {
                    invocation: *child,
                    execution: r.execution,
                    entry,
                    args: args.clone(),
                    started,
                    parent: Some(parent),
                    deadline: r.deadline,
                    lease_until: now.saturating_add(self.lease),
                    slot,
                    prepared: None,
                });
            }
        }
        Ok((spawn, local))
    }

    pub(super) fn start_children(self: &Arc<Self>, children: Vec<LocalStart>) {
        for c in children {
            if self.now() >= c.lease_until {
                // The commit that created it took longer than a lease (an
                // overloaded host or database): another worker may already
                // have claimed it, so its body must not start here. It is
                // claimed like any expired lease.
                tracing::warn!(invocation = %c.invocation, "lease ran out before the child could start; leaving it to a claim");
                continue;
            }
            let (driver, first_status) = match c.prepared {
                Some(prepared) => (prepared.driver, prepared.status),
                None => {
                    match self.new_driver(c.invocation, vec![c.started], c.entry.invoke(c.args)) {
                        Ok(d) => (d, None),
                        Err(e) => {
                            // Cannot happen for a journal we just built; the lease
                            // runs out and another claim replays it from storage.
                            tracing::error!(invocation = %c.invocation, error = %e, "could not start child");
                            continue;
                        }
                    }
                }
            };
            let residence = self.hold(c.invocation, c.execution, LeaseEpoch(1));
            let mut running = Running::new(
                c.invocation,
                c.execution,
                LeaseEpoch(1),
                c.parent,
                driver,
                Some(c.slot),
                residence,
            );
            running.deadline = c.deadline;
            running.entry = Some(c.entry);
            running.first_status = first_status;
            self.spawn_tracked(self.clone().drive(running, false));
        }
    }

    /// Offers this finished child's final turn and result to its parent
    /// resident in this process. True once the parent committed both.
    pub(super) async fn hand_off(
        &self,
        parent: InvocationId,
        commits: Vec<TurnCommit>,
        out: &std::result::Result<Payload, Failure>,
        link: Option<ParentLink>,
    ) -> bool {
        let Some(link) = link else { return false };
        let (done, answer) = oneshot::channel();
        let handoff = Handoff {
            commits,
            resolution: resolution(link.seq, out),
            done,
        };
        if !self.inner.hub.hand_off(parent, handoff) {
            return false;
        }
        matches!(answer.await, Ok(Ok(())))
    }

    /// Commits `own` together with the turns of children handed off to `r`
    /// and its deferred turns, in one transaction, and tells those children
    /// how it went.
    pub(super) async fn commit_with_handoffs(
        &self,
        r: &mut Running,
        own: TurnCommit,
    ) -> Result<(), TurnError> {
        let handed_off = std::mem::take(&mut r.handed_off);
        let mut turns = Vec::with_capacity(handed_off.len() + 2);
        let mut answers = Vec::with_capacity(handed_off.len());
        for h in handed_off {
            turns.extend(h.commits);
            answers.push(h.done);
        }
        turns.extend(merged_turns(r.deferred.take(), own));
        let result = self.inner.backend.commit(turns).await;
        if result.is_ok() {
            r.unstored = None;
        }
        for answer in answers {
            let _ = answer.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        match result {
            Ok(()) => Ok(()),
            // A handed-off child lost its lease (it was taken over): our own
            // lease is fine, but the results we applied in memory are not
            // stored. Reload from the journal; the child's new owner delivers.
            Err(StoreError::LeaseLost { invocation, .. }) if invocation != r.invocation => {
                Err(TurnError::Retry(format!(
                    "handed-off child {invocation} lost its lease; reloading"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `own` with the deferred turns that must be stored with it: the deferred
/// turn of the same invocation folded in, then the inline steps' ends.
pub(super) fn merged_turns(deferred: Option<Deferred>, own: TurnCommit) -> Vec<TurnCommit> {
    let Some(deferred) = deferred else {
        return vec![own];
    };
    let mut turns = Vec::with_capacity(deferred.steps.len() + 2);
    match deferred.own {
        Some(mut earlier) => match earlier.absorb(own) {
            Ok(()) => turns.push(earlier),
            // Not a lease hold: stored as two turns (the store refuses the
            // second if the first released the lease, and the turn reloads).
            Err(own) => {
                turns.push(earlier);
                turns.push(*own);
            }
        },
        None => turns.push(own),
    }
    turns.extend(deferred.steps);
    turns
}
