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
//! Either read failing (storage still away: "the commit failed, then the
//! reload failed") starts the cycle again after a longer wait.
//!
//! The decisions are [`Recovery`], a state machine fed what each storage
//! call returned and tested without a backend; [`Core::recover`] runs it
//! against storage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stent_journal::{InvocationId, LeaseEpoch};
use stent_replay::Driver;

use super::{Core, LoadError};
use crate::executor::PollSettings;

/// Why recovery ended without a driver to go on with.
#[derive(Debug, PartialEq)]
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

/// What recovery does next.
#[derive(Debug, PartialEq)]
pub(super) enum Next<J> {
    /// Wait this long, then report [`Seen::Woke`].
    Wait(Duration),
    /// Renew the lease, then report [`Seen::Renewed`].
    Renew,
    /// Read the journal, then report [`Seen::Read`].
    Read,
    /// Go on from this journal. `keep_end`: the end kept from before the
    /// fault still holds (the journal is exactly as long as the one it was
    /// reached from, so the commit storing it did not land).
    Resume { journal: J, keep_end: bool },
    /// Run nothing more of the invocation.
    Stop(Stop),
}

/// What a step of recovery found.
#[derive(Debug)]
pub(super) enum Seen<J> {
    /// The wait is over.
    Woke {
        /// The lease's lost flag is set (the heartbeat found it gone).
        lease_lost: bool,
        /// The worker was told to drain.
        draining: bool,
    },
    /// The renewal's answer.
    Renewed(Renewal),
    /// The journal read's answer.
    Read(Reading<J>),
}

/// How a lease renewal went.
#[derive(Debug)]
pub(super) enum Renewal {
    /// Still held at this epoch, for another lease.
    Held,
    /// No longer held at this epoch.
    Gone,
    /// Storage failed.
    Failed,
}

/// How a journal read went.
#[derive(Debug)]
pub(super) enum Reading<J> {
    /// Read, `len` events long.
    Journal { journal: J, len: usize },
    /// It ends with the invocation's end.
    Finished(String),
    /// It cannot be run.
    Corrupt(String),
    /// Storage failed.
    Failed,
}

/// Where a recovery stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Waiting,
    Renewing,
    Reading,
}

/// Recovery after a storage fault, as a state machine (see the module
/// docs): wait, renew the lease, read the journal; any failure waits
/// longer and starts again.
#[derive(Debug)]
pub(super) struct Recovery {
    state: State,
    delay: Duration,
    poll: PollSettings,
    attempt: u32,
    /// The length of the journal a kept end was reached from, if one is
    /// kept (see `Running::unstored_end`).
    kept_end: Option<usize>,
}

impl Recovery {
    /// A recovery that first waits `poll.min`; `kept_end` as above.
    pub(super) fn new<J>(poll: PollSettings, kept_end: Option<usize>) -> (Recovery, Next<J>) {
        let recovery = Recovery {
            state: State::Waiting,
            delay: poll.min,
            poll,
            attempt: 0,
            kept_end,
        };
        let first = Next::Wait(recovery.delay);
        (recovery, first)
    }

    /// Renewals tried so far.
    pub(super) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next step, given what the last one found. A finding the state
    /// does not expect starts the cycle again (it cannot happen when the
    /// steps are run as asked).
    pub(super) fn next<J>(&mut self, seen: Seen<J>) -> Next<J> {
        match (self.state, seen) {
            (
                State::Waiting,
                Seen::Woke {
                    lease_lost: true, ..
                },
            ) => Next::Stop(Stop::LeaseGone),
            (State::Waiting, Seen::Woke { draining: true, .. }) => Next::Stop(Stop::Draining),
            (State::Waiting, Seen::Woke { .. }) => {
                self.attempt += 1;
                self.state = State::Renewing;
                Next::Renew
            }
            (State::Renewing, Seen::Renewed(Renewal::Held)) => {
                self.state = State::Reading;
                Next::Read
            }
            (State::Renewing, Seen::Renewed(Renewal::Gone)) => Next::Stop(Stop::LeaseGone),
            (State::Reading, Seen::Read(Reading::Journal { journal, len })) => Next::Resume {
                journal,
                keep_end: self.kept_end == Some(len),
            },
            (State::Reading, Seen::Read(Reading::Finished(report))) => {
                Next::Stop(Stop::Finished(report))
            }
            (State::Reading, Seen::Read(Reading::Corrupt(report))) => {
                Next::Stop(Stop::Corrupt(report))
            }
            // Storage still failing, or out of step: wait longer, again.
            _ => {
                self.delay = self.poll.next(self.delay);
                self.state = State::Waiting;
                Next::Wait(self.delay)
            }
        }
    }
}

impl Core {
    /// Runs [`Recovery`] for `invocation` at `epoch` against storage until
    /// its lease and journal are read again. `lost`: the lease's lost flag;
    /// `kept_end`: see [`Recovery::new`]. Returns the replayed driver and
    /// whether the kept end still holds.
    pub(super) async fn recover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
        lost: &AtomicBool,
        kept_end: Option<usize>,
    ) -> Result<(Driver, bool), Stop> {
        let (mut recovery, mut next) = Recovery::new::<Driver>(self.poll, kept_end);
        loop {
            let seen = match next {
                Next::Wait(delay) => {
                    tokio::time::sleep(delay).await;
                    Seen::Woke {
                        lease_lost: lost.load(Ordering::SeqCst),
                        draining: self.draining(),
                    }
                }
                Next::Renew => {
                    let now = self.now();
                    let until = now.saturating_add(self.lease);
                    let held = [(invocation, epoch)];
                    Seen::Renewed(
                        match self
                            .inner
                            .backend
                            .renew_leases(&self.id, &held, now, until)
                            .await
                        {
                            Ok(lost) if lost.is_empty() => Renewal::Held,
                            Ok(_) => Renewal::Gone,
                            Err(e) => {
                                tracing::warn!(%invocation, attempt = recovery.attempt(), error = %e, "storage still failing; the invocation waits");
                                Renewal::Failed
                            }
                        },
                    )
                }
                Next::Read => Seen::Read(match self.load(invocation, None).await {
                    Ok((driver, _)) => Reading::Journal {
                        len: driver.journal_len(),
                        journal: driver,
                    },
                    Err(LoadError::Store(e)) => {
                        tracing::warn!(%invocation, attempt = recovery.attempt(), error = %e, "storage still failing; the invocation waits");
                        Reading::Failed
                    }
                    Err(LoadError::Finished(report)) => Reading::Finished(report),
                    Err(LoadError::Corrupt(report)) => Reading::Corrupt(report),
                }),
                Next::Resume { journal, keep_end } => {
                    tracing::info!(%invocation, attempt = recovery.attempt(), "storage is back; replaying the invocation from its journal");
                    return Ok((journal, keep_end));
                }
                Next::Stop(stop) => return Err(stop),
            };
            next = recovery.next(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn poll() -> PollSettings {
        PollSettings {
            min: 10 * MS,
            max: 80 * MS,
            factor: 2.0,
        }
    }

    fn woke() -> Seen<&'static str> {
        Seen::Woke {
            lease_lost: false,
            draining: false,
        }
    }

    fn renewed(renewal: Renewal) -> Seen<&'static str> {
        Seen::Renewed(renewal)
    }

    fn journal(len: usize) -> Seen<&'static str> {
        Seen::Read(Reading::Journal {
            journal: "journal",
            len,
        })
    }

    fn resume(keep_end: bool) -> Next<&'static str> {
        Next::Resume {
            journal: "journal",
            keep_end,
        }
    }

    #[test]
    fn storage_back_at_once_renews_reads_and_resumes() {
        let (mut r, first) = Recovery::new(poll(), None);
        assert_eq!(first, Next::<()>::Wait(10 * MS));
        assert_eq!(r.next(woke()), Next::Renew);
        assert_eq!(r.next(renewed(Renewal::Held)), Next::Read);
        assert_eq!(r.next(journal(4)), resume(false));
        assert_eq!(r.attempt(), 1);
    }

    #[test]
    fn commit_failed_then_reload_failed_waits_longer_and_tries_again() {
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        assert_eq!(r.next(woke()), Next::Renew);
        assert_eq!(r.next(renewed(Renewal::Held)), Next::Read);
        // The reload fails: storage is still away.
        assert_eq!(
            r.next(Seen::Read(Reading::<&str>::Failed)),
            Next::Wait(20 * MS)
        );
        // The cycle starts again with the lease: it may have lapsed meanwhile.
        assert_eq!(r.next(woke()), Next::Renew);
        assert_eq!(r.next(renewed(Renewal::Held)), Next::Read);
        assert_eq!(r.next(journal(3)), resume(false));
        assert_eq!(r.attempt(), 2);
    }

    #[test]
    fn failing_renewals_back_off_up_to_the_poll_maximum() {
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert_eq!(r.next(woke()), Next::Renew);
            match r.next(renewed(Renewal::Failed)) {
                Next::Wait(d) => waits.push(d),
                other => panic!("expected a wait, got {other:?}"),
            }
        }
        assert_eq!(waits, [20 * MS, 40 * MS, 80 * MS, 80 * MS, 80 * MS]);
        assert_eq!(r.attempt(), 5);
    }

    #[test]
    fn a_lease_gone_stops_whether_seen_by_the_heartbeat_or_the_renewal() {
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        let seen = Seen::<()>::Woke {
            lease_lost: true,
            draining: false,
        };
        assert_eq!(r.next(seen), Next::Stop(Stop::LeaseGone));
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        assert_eq!(r.next(woke()), Next::Renew);
        assert_eq!(r.next(renewed(Renewal::Gone)), Next::Stop(Stop::LeaseGone));
    }

    #[test]
    fn a_draining_worker_stops_waiting() {
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        let seen = Seen::<()>::Woke {
            lease_lost: false,
            draining: true,
        };
        assert_eq!(r.next(seen), Next::Stop(Stop::Draining));
    }

    #[test]
    fn a_journal_that_holds_the_end_or_cannot_run_stops() {
        for (reading, stop) in [
            (
                Reading::Finished("ended".into()),
                Stop::Finished("ended".into()),
            ),
            (Reading::Corrupt("bad".into()), Stop::Corrupt("bad".into())),
        ] {
            let (mut r, _) = Recovery::new::<()>(poll(), Some(2));
            assert_eq!(r.next(woke()), Next::Renew);
            assert_eq!(r.next(renewed(Renewal::Held)), Next::Read);
            assert_eq!(r.next(Seen::<&str>::Read(reading)), Next::Stop(stop));
        }
    }

    #[test]
    fn a_kept_end_holds_only_on_a_journal_exactly_as_long_as_before() {
        for (stored, keep) in [(5, true), (6, false), (4, false)] {
            let (mut r, _) = Recovery::new::<()>(poll(), Some(5));
            assert_eq!(r.next(woke()), Next::Renew);
            assert_eq!(r.next(renewed(Renewal::Held)), Next::Read);
            assert_eq!(r.next(journal(stored)), resume(keep), "stored {stored}");
        }
    }

    #[test]
    fn findings_out_of_step_start_the_cycle_again() {
        let (mut r, _) = Recovery::new::<()>(poll(), None);
        // A journal before the lease was renewed is not trusted.
        assert_eq!(r.next(journal(3)), Next::Wait(20 * MS));
        assert_eq!(r.next(woke()), Next::Renew);
        assert_eq!(r.next(woke()), Next::Wait(40 * MS));
    }
}
