//! An invocation's run on a worker as a state machine: the idempotency
//! gate, then turns (check the lease and deadline, advance the code, apply
//! what arrived, read storage, answer from the cache, store the turn,
//! wait), and recovery after a failed storage call.
//!
//! [`TurnLoop`] holds only the loop's own state: which phase it is in, the
//! answers queued for the code, whether storage must be read, and the
//! polling backoff. It is fed what each effect found ([`Seen`]) and says
//! which effect comes next ([`Next`]); [`turns`](super::turns) runs the
//! effects against the driver and storage. So every transition, "a commit
//! failed, recovery read the journal again" included, is tested here
//! without a backend; what recovery itself does is
//! [`recovery`](super::recovery).
//!
//! The machine is generic over what it passes through without looking
//! inside: `A`, an answer that arrived for the code; `S`, a status of the
//! code that ends the run; `E`, an outcome kept from a commit that failed.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Ended, Gate, TurnError};
use crate::executor::PollSettings;

/// The next effect to run.
#[derive(Debug, PartialEq)]
pub(super) enum Next<A, S, E> {
    /// Check idempotency, then report [`Seen::Gated`].
    Gate,
    /// Look at the lease's lost flag, the deadline and a kept outcome, then
    /// report [`Seen::Checked`].
    Check,
    /// Time the execution out, then report how that ended.
    TimeOut,
    /// Store the outcome kept from a failed commit, then report how that
    /// ended.
    FinishKept(E),
    /// Poll the code, then report [`Seen::Advanced`].
    Advance,
    /// End the run for this status of the code (finish, fail, pause),
    /// then report how that ended.
    End(S),
    /// Take the hand-offs already sent to this invocation, then report
    /// [`Seen::Gathered`].
    Gather,
    /// Apply this answer to the code, then report [`Seen::Applied`] or how
    /// the run ended.
    Apply(A),
    /// Read answers available now (timers due; when `read_storage`,
    /// deliveries and signals), then report [`Seen::Collected`].
    Collect {
        /// Storage may hold answers not seen yet.
        read_storage: bool,
    },
    /// Answer new calls of cached functions from the cache, then report
    /// [`Seen::Cached`].
    Cache,
    /// Store the turn, then report [`Seen::Stored`] or how the run ended.
    /// `behind`: the code is still catching up with its journal.
    Store { behind: bool },
    /// Wait for a wake-up, at most `delay`, then report [`Seen::Woke`].
    Wait {
        delay: Duration,
        /// What [`Seen::Stored`] passed on.
        stay: Stay,
    },
    /// A storage call failed: recover ([`recovery`](super::recovery)),
    /// then report [`Seen::Recovered`].
    Recover {
        /// What failed.
        message: String,
        /// It failed in the idempotency gate, before any turn.
        gating: bool,
    },
    /// Run nothing more of the invocation here.
    Exit(Exit),
}

/// How a run leaves the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// Release the lease (ended, or left to a later claim).
    Release,
    /// Release the lease and keep the code in the sticky cache: it waits
    /// for a timer or a signal.
    Park,
    /// The lease was lost: forget it, then release what is left.
    LeaseGone,
}

/// A resident invocation's wait after a stored turn, as the store found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stay {
    /// Until the code's earliest outstanding timer is due.
    pub timer_in: Option<Duration>,
    /// Until the execution's deadline.
    pub deadline_in: Option<Duration>,
    /// The code awaits real I/O: a worker starting to drain does not end
    /// the wait.
    pub io_wait: bool,
}

/// What an effect found.
#[derive(Debug)]
pub(super) enum Seen<A, S, E> {
    /// The idempotency gate's answer.
    Gated(Gate),
    /// What [`Next::Check`] looked at.
    Checked {
        lease_lost: bool,
        deadline_passed: bool,
        kept_end: Option<E>,
    },
    /// What polling the code returned.
    Advanced(Progress<S>),
    /// Hand-offs taken from the channel.
    Gathered(Vec<A>),
    /// The answer was applied (or handed back); the code can go on.
    Applied,
    /// Answers read.
    Collected(Vec<A>),
    /// Whether the cache answered any call.
    Cached(bool),
    /// The turn is stored.
    Stored(Stored),
    /// What ended the wait.
    Woke(Wake<A>),
    /// Whether recovery read the lease and the journal again.
    Recovered(bool),
    /// The run ended (finished, failed, paused, timed out, parked).
    Ended(Ended),
    /// A storage call failed, or the lease is gone.
    Failed(TurnError),
}

impl<A, S, E> Seen<A, S, E> {
    /// `Ended`, or `Failed` for an error.
    pub(super) fn ended(result: Result<Ended, TurnError>) -> Self {
        result.map_or_else(Seen::Failed, Seen::Ended)
    }
}

/// What polling the code returned.
#[derive(Debug)]
pub(super) enum Progress<S> {
    /// It returned, failed or stopped: the run ends with this status.
    Ends(S),
    /// It waits for durable effects.
    Blocked,
    /// It is still catching up with its journal (real I/O in between).
    Behind,
}

/// How storing a turn went, short of the run ending.
#[derive(Debug, PartialEq)]
pub(super) enum Stored {
    /// A step started with the turn returned at once: the code goes on.
    Again,
    /// The invocation stays resident and waits.
    Stay(Stay),
}

/// What ended a resident invocation's wait.
#[derive(Debug)]
pub(super) enum Wake<A> {
    /// The hub's notification: storage may hold something new for it.
    Notified,
    /// A child finished in-process and handed this answer over.
    Handoff(A),
    /// Hand-offs now go through storage (another claim took the
    /// registration).
    HandoffsClosed,
    /// The poll interval passed.
    Slept,
    /// The deadline, a drain, or the code's own waker.
    Other,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Gating,
    Checking,
    Advancing,
    Gathering,
    Applying,
    Collecting,
    Caching,
    Storing,
    Waiting,
    Recovering { gating: bool },
    Ending,
}

/// The run's state machine: see the module docs.
#[derive(Debug)]
pub(super) struct TurnLoop<A> {
    phase: Phase,
    poll: PollSettings,
    /// Answers that arrived and are not applied yet, in order.
    queue: VecDeque<A>,
    /// The next collect reads storage (deliveries, signals), not only due
    /// timers.
    read_storage: bool,
    backoff: Duration,
}

impl<A> TurnLoop<A> {
    /// A run that starts at the idempotency gate; `read_storage`: storage
    /// may already hold answers for it (it was claimed, not started here).
    pub(super) fn new<S, E>(poll: PollSettings, read_storage: bool) -> (Self, Next<A, S, E>) {
        let machine = TurnLoop {
            phase: Phase::Gating,
            poll,
            queue: VecDeque::new(),
            read_storage,
            backoff: poll.min,
        };
        (machine, Next::Gate)
    }

    /// The next effect, given what the last one found. A finding the phase
    /// does not expect (it cannot happen when the effects are run as asked)
    /// starts the turn again from its checks, which read everything anew.
    pub(super) fn next<S, E>(&mut self, seen: Seen<A, S, E>) -> Next<A, S, E> {
        match (self.phase, seen) {
            (_, Seen::Failed(TurnError::LeaseLost)) => self.exit(Exit::LeaseGone),
            (phase, Seen::Failed(TurnError::Retry(message))) => {
                let gating = phase == Phase::Gating || phase == Phase::Recovering { gating: true };
                self.phase = Phase::Recovering { gating };
                Next::Recover { message, gating }
            }
            (_, Seen::Ended(Ended::Done)) => self.exit(Exit::Release),
            (_, Seen::Ended(Ended::Parked)) => self.exit(Exit::Park),

            (Phase::Gating, Seen::Gated(Gate::Run)) => self.check(),
            (Phase::Gating, Seen::Gated(Gate::Done)) => self.exit(Exit::Release),

            (
                Phase::Checking,
                Seen::Checked {
                    lease_lost,
                    deadline_passed,
                    kept_end,
                },
            ) => {
                if lease_lost {
                    self.exit(Exit::LeaseGone)
                } else if deadline_passed {
                    self.phase = Phase::Ending;
                    Next::TimeOut
                } else if let Some(end) = kept_end {
                    self.phase = Phase::Ending;
                    Next::FinishKept(end)
                } else {
                    self.phase = Phase::Advancing;
                    Next::Advance
                }
            }

            (Phase::Advancing, Seen::Advanced(progress)) => match progress {
                Progress::Ends(status) => {
                    self.phase = Phase::Ending;
                    Next::End(status)
                }
                Progress::Behind => self.store(true),
                Progress::Blocked => {
                    self.phase = Phase::Gathering;
                    Next::Gather
                }
            },

            (Phase::Gathering, Seen::Gathered(arrived)) => {
                self.queue.extend(arrived);
                match self.queue.pop_front() {
                    Some(answer) => {
                        self.phase = Phase::Applying;
                        Next::Apply(answer)
                    }
                    None => {
                        self.phase = Phase::Collecting;
                        Next::Collect {
                            read_storage: self.read_storage,
                        }
                    }
                }
            }
            (Phase::Applying, Seen::Applied) => self.check(),

            (Phase::Collecting, Seen::Collected(found)) => {
                self.read_storage = false;
                if found.is_empty() {
                    self.phase = Phase::Caching;
                    Next::Cache
                } else {
                    self.queue.extend(found);
                    self.check()
                }
            }
            (Phase::Caching, Seen::Cached(true)) => self.check(),
            (Phase::Caching, Seen::Cached(false)) => self.store(false),

            (Phase::Storing, Seen::Stored(Stored::Again)) => self.check(),
            (Phase::Storing, Seen::Stored(Stored::Stay(stay))) => {
                self.phase = Phase::Waiting;
                let delay = match stay.timer_in {
                    Some(t) => t.min(self.backoff),
                    None => self.backoff,
                };
                Next::Wait { delay, stay }
            }

            (Phase::Waiting, Seen::Woke(wake)) => {
                // Woken by a hand-off, the answer is in hand: storage is
                // read again at the next other wake-up or poll, not after
                // every in-process step (that read was a round trip per
                // step).
                self.read_storage = true;
                match wake {
                    Wake::Notified | Wake::HandoffsClosed => self.backoff = self.poll.min,
                    Wake::Handoff(answer) => {
                        self.queue.push_back(answer);
                        self.read_storage = false;
                        self.backoff = self.poll.min;
                    }
                    Wake::Slept => self.backoff = self.poll.next(self.backoff),
                    Wake::Other => {}
                }
                self.check()
            }

            (Phase::Recovering { gating }, Seen::Recovered(true)) => {
                if gating {
                    self.phase = Phase::Gating;
                    Next::Gate
                } else {
                    // Everything held in memory was replaced by the
                    // replayed journal: answers queued before the fault are
                    // dropped (children deliver theirs through storage) and
                    // storage is read again.
                    self.queue.clear();
                    self.read_storage = true;
                    self.backoff = self.poll.min;
                    self.check()
                }
            }
            (Phase::Recovering { .. }, Seen::Recovered(false)) => self.exit(Exit::Release),

            (Phase::Gating | Phase::Recovering { gating: true }, _) => {
                self.phase = Phase::Gating;
                Next::Gate
            }
            _ => self.check(),
        }
    }

    fn check<S, E>(&mut self) -> Next<A, S, E> {
        self.phase = Phase::Checking;
        Next::Check
    }

    /// `behind`: the code is still catching up with its journal (then
    /// nothing was applied or read this turn).
    fn store<S, E>(&mut self, behind: bool) -> Next<A, S, E> {
        self.phase = Phase::Storing;
        Next::Store { behind }
    }

    fn exit<S, E>(&mut self, exit: Exit) -> Next<A, S, E> {
        self.phase = Phase::Ending;
        Next::Exit(exit)
    }
}

#[cfg(test)]
mod tests;
