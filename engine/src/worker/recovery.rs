//! What a worker does after a storage call of a running invocation failed.
//!
//! A failed call says nothing about storage: a commit whose reply was lost
//! may have landed (and released the lease, or stored the invocation's
//! end), the database may be restarting, the lease may lapse meanwhile and
//! be taken over. So the state in memory is never trusted again. The worker
//! waits, with backoff, until it can re-read the two things that decide
//! what happens next, both from storage:
//!
//! 1. the lease, by renewing it: if it is no longer held at this epoch, a
//!    commit landed that released it (the invocation finished, parked,
//!    retried, paused) or another worker took it over; either way this
//!    worker stops and runs nothing more of it;
//! 2. the journal, read whole: the invocation replays from it, so a commit
//!    that landed is seen, and one that did not is made again.
//!
//! Until both are read the invocation does nothing; a worker that starts
//! draining stops waiting (the lease lapses and another worker claims it).

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use stent_journal::{InvocationId, LeaseEpoch};
use stent_replay::Driver;

use super::{Core, LoadError};

/// Why recovery ended without a driver to go on with.
pub(super) enum Stop {
    /// The lease is no longer held at this epoch.
    LeaseGone,
    /// The worker drains: it leaves the invocation to a later claim.
    Draining,
    /// The journal already ends with the invocation's end (a commit whose
    /// reply was lost had stored it).
    Finished(String),
    /// The stored journal cannot be run: the execution must be paused.
    Corrupt(String),
}

impl Core {
    /// Waits until the lease of `invocation` at `epoch` and its journal
    /// can be read again after a storage fault (see the module docs).
    /// `lost`: the lease's lost flag; `delay`: the first wait, growing with
    /// each failed attempt.
    pub(super) async fn recover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
        lost: &AtomicBool,
        mut delay: Duration,
    ) -> Result<Driver, Stop> {
        let mut attempt = 0u32;
        loop {
            tokio::time::sleep(delay).await;
            delay = self.poll.next(delay);
            attempt += 1;
            if lost.load(Ordering::SeqCst) {
                return Err(Stop::LeaseGone);
            }
            if self.draining() {
                return Err(Stop::Draining);
            }
            let held = [(invocation, epoch)];
            let now = self.now();
            let until = now.saturating_add(self.lease);
            match self
                .inner
                .backend
                .renew_leases(&self.id, &held, now, until)
                .await
            {
                Ok(lost) if lost.is_empty() => {}
                Ok(_) => return Err(Stop::LeaseGone),
                Err(e) => {
                    tracing::warn!(invocation = %invocation, attempt, error = %e, "storage still failing; the invocation waits");
                    continue;
                }
            }
            match self.load(invocation, None).await {
                Ok((driver, _)) => {
                    tracing::info!(invocation = %invocation, attempt, "storage is back; replaying the invocation from its journal");
                    return Ok(driver);
                }
                Err(LoadError::Store(e)) => {
                    tracing::warn!(invocation = %invocation, attempt, error = %e, "storage still failing; the invocation waits");
                }
                Err(LoadError::Finished(report)) => return Err(Stop::Finished(report)),
                Err(LoadError::Corrupt(report)) => return Err(Stop::Corrupt(report)),
            }
        }
    }
}
