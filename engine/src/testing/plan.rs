//! Fault plans: what goes wrong in one simulated run, and the proptest
//! [`Strategy`] that generates (and shrinks) them.

use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};

/// Which kinds of faults a simulation injects. All on by default. Start
/// from [`Faults::all`] or [`Faults::none`] and switch kinds with the
/// setters (new kinds may be added, so the struct cannot be written out
/// field by field).
///
/// ```
/// use stent::testing::Faults;
///
/// let only_crashes = Faults::none().crashes(true);
/// assert!(only_crashes.crashes && !only_crashes.zombies);
/// assert!(!Faults::all().zombies(false).zombies);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Crash the worker after (or just before) a storage write; a fresh
    /// worker takes over once the dead one's leases expire.
    pub crashes: bool,
    /// Fail one call of a function that has a retry policy with a
    /// transient error (its retry policy gets one more attempt for it).
    pub transient_failures: bool,
    /// Stall a worker's storage access past its lease in the middle of a
    /// step, so a second worker runs the same step; the stalled worker's
    /// writes must then be refused.
    pub zombies: bool,
    /// Deliver the configured signals late (after a random delay), or
    /// twice.
    pub signals: bool,
    /// Jump the virtual clock forward at a storage write, past timers and
    /// lease expiries.
    pub clock_jumps: bool,
    /// Fail a storage write (before it reaches storage, or after it was
    /// applied, its reply lost) and keep storage away from every worker
    /// for a while, past lease expiries.
    pub storage: bool,
}

impl Faults {
    /// Every kind of fault.
    pub const fn all() -> Faults {
        Faults {
            crashes: true,
            transient_failures: true,
            zombies: true,
            signals: true,
            clock_jumps: true,
            storage: true,
        }
    }

    /// No faults (each case then only checks the clean run's invariants,
    /// twice).
    pub const fn none() -> Faults {
        Faults {
            crashes: false,
            transient_failures: false,
            zombies: false,
            signals: false,
            clock_jumps: false,
            storage: false,
        }
    }

    /// Worker crashes on or off.
    #[must_use]
    pub const fn crashes(mut self, on: bool) -> Faults {
        self.crashes = on;
        self
    }

    /// Transient failures of retried functions on or off.
    #[must_use]
    pub const fn transient_failures(mut self, on: bool) -> Faults {
        self.transient_failures = on;
        self
    }

    /// Zombie workers (stalled past their lease) on or off.
    #[must_use]
    pub const fn zombies(mut self, on: bool) -> Faults {
        self.zombies = on;
        self
    }

    /// Late or duplicated signals on or off.
    #[must_use]
    pub const fn signals(mut self, on: bool) -> Faults {
        self.signals = on;
        self
    }

    /// Jumps of the virtual clock on or off.
    #[must_use]
    pub const fn clock_jumps(mut self, on: bool) -> Faults {
        self.clock_jumps = on;
        self
    }

    /// Storage faults (failed writes, lost replies, outages) on or off.
    #[must_use]
    pub const fn storage(mut self, on: bool) -> Faults {
        self.storage = on;
        self
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::all()
    }
}

/// Storage write points are drawn from `1..=WRITE_POINTS` and mapped onto
/// the writes the clean run made: point `p` is write `(p - 1) % W + 1`.
pub(crate) const WRITE_POINTS: u32 = 1000;

/// One fault of a [`FaultPlan`].
///
/// Write numbers count the storage writes of all workers in the run
/// (commits, claims that leased something, lease renewals, idempotency
/// claims, execution ends), from 1. They are drawn from `1..=1000` and
/// wrap around the number of writes the clean run made, so every point
/// lands on a real write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The worker making write `at_write` dies: with `write_lost` just
    /// before the write reaches storage, otherwise just after. All its
    /// in-memory state is gone (it never touches storage again); a fresh
    /// worker takes over when its leases expire.
    Crash {
        /// The write point.
        at_write: u32,
        /// The write itself is lost too.
        write_lost: bool,
    },
    /// The `nth` completed body run of `function` (counted from 1 over the
    /// whole run) reports a transient failure instead of its result; its
    /// retry policy runs it again.
    FailCall {
        /// Registered function name.
        function: String,
        /// Which body run fails.
        nth: u32,
    },
    /// The worker making write `at_write` stalls for its lease duration
    /// plus `extra_ms` before the write: its leases expire, a second worker
    /// takes the same invocations over, and the stalled worker's late
    /// writes must be refused.
    Zombie {
        /// The write point.
        at_write: u32,
        /// How far past the lease the stall lasts, in milliseconds.
        extra_ms: u64,
    },
    /// At write `at_write` the virtual clock jumps `by_ms` forward.
    ClockJump {
        /// The write point.
        at_write: u32,
        /// How far, in milliseconds.
        by_ms: u64,
    },
    /// Write `at_write` fails: with `landed` it was applied and only its
    /// reply is lost, otherwise it never reached storage (a claim always
    /// lands). Storage then stays away from every worker (every call
    /// fails) for `down_ms` virtual milliseconds.
    StorageFault {
        /// The write point.
        at_write: u32,
        /// The write was applied; the worker is told it failed.
        landed: bool,
        /// How long storage stays away after it, in milliseconds.
        down_ms: u64,
    },
}

/// When one configured signal is delivered in a faulty run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalDelivery {
    /// Virtual milliseconds after dispatch (never before the previous
    /// signal of the list).
    pub delay_ms: u64,
    /// Sent twice.
    pub twice: bool,
}

/// Everything that goes wrong in one faulty run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// The faults, in no particular order.
    pub faults: Vec<Fault>,
    /// One delivery per configured signal, in the configured order.
    pub signals: Vec<SignalDelivery>,
}

/// What a [`FaultPlan`] may contain; the input of [`FaultPlan::strategy`].
#[derive(Debug, Clone)]
pub struct PlanSpace {
    /// Enabled fault kinds.
    pub faults: Faults,
    /// Functions that may fail transiently (those with a retry policy).
    pub retryable: Vec<String>,
    /// The workers' lease duration.
    pub lease: Duration,
    /// How many signals are sent, and whether each may be duplicated
    /// (a name listed once may be; a name listed several times is awaited
    /// several times, so a duplicate would change the outcome).
    pub signals: Vec<bool>,
    /// Longest delay of a late signal.
    pub max_signal_delay: Duration,
    /// Most faults in one plan (crashes, zombies and clock jumps together
    /// are limited to two).
    pub max_faults: usize,
}

impl FaultPlan {
    /// A proptest strategy over fault plans in `space`. Shrinking removes
    /// faults, moves write points earlier and delays towards zero.
    pub fn strategy(space: &PlanSpace) -> BoxedStrategy<FaultPlan> {
        let lease_ms = space.lease.as_millis().max(1) as u64;
        let mut kinds: Vec<BoxedStrategy<Fault>> = Vec::new();
        if space.faults.crashes {
            kinds.push(
                (1..=WRITE_POINTS, any::<bool>())
                    .prop_map(|(at_write, write_lost)| Fault::Crash {
                        at_write,
                        write_lost,
                    })
                    .boxed(),
            );
        }
        if space.faults.transient_failures && !space.retryable.is_empty() {
            kinds.push(
                (prop::sample::select(space.retryable.clone()), 1u32..=3)
                    .prop_map(|(function, nth)| Fault::FailCall { function, nth })
                    .boxed(),
            );
        }
        if space.faults.zombies {
            kinds.push(
                (1..=WRITE_POINTS, 1..=lease_ms)
                    .prop_map(|(at_write, extra_ms)| Fault::Zombie { at_write, extra_ms })
                    .boxed(),
            );
        }
        if space.faults.storage {
            kinds.push(
                (1..=WRITE_POINTS, any::<bool>(), 0..=2 * lease_ms)
                    .prop_map(|(at_write, landed, down_ms)| Fault::StorageFault {
                        at_write,
                        landed,
                        down_ms,
                    })
                    .boxed(),
            );
        }
        if space.faults.clock_jumps {
            kinds.push(
                (1..=WRITE_POINTS, 1..=3 * lease_ms)
                    .prop_map(|(at_write, by_ms)| Fault::ClockJump { at_write, by_ms })
                    .boxed(),
            );
        }
        let faults = if kinds.is_empty() {
            Just(Vec::new()).boxed()
        } else {
            prop::collection::vec(Union::new(kinds), 1..=space.max_faults.max(1))
                .prop_map(|mut faults| {
                    // A worker that dies or stalls (or whose leases a clock
                    // jump expires) leaves its tasks claimed without a commit; the engine dead-letters a task
                    // claimed more than three times in a row that way.
                    let mut lost_claims = 0;
                    faults.retain(|f| {
                        if f.may_lose_a_claim() {
                            lost_claims += 1;
                            lost_claims <= 2
                        } else {
                            true
                        }
                    });
                    faults
                })
                .boxed()
        };
        let max_delay = space.max_signal_delay.as_millis() as u64;
        let late = space.faults.signals;
        let signals: Vec<BoxedStrategy<SignalDelivery>> = space
            .signals
            .iter()
            .map(|&may_duplicate| {
                let delay = if late {
                    (0..=max_delay).boxed()
                } else {
                    Just(0).boxed()
                };
                let twice = if late && may_duplicate {
                    any::<bool>().boxed()
                } else {
                    Just(false).boxed()
                };
                (delay, twice)
                    .prop_map(|(delay_ms, twice)| SignalDelivery { delay_ms, twice })
                    .boxed()
            })
            .collect();
        (faults, signals)
            .prop_map(|(faults, signals)| FaultPlan { faults, signals })
            .boxed()
    }
}

/// Maps a drawn write point onto the `writes` writes of the clean run.
pub(crate) fn resolve_point(point: u32, writes: u32) -> u32 {
    (point.max(1) - 1) % writes.max(1) + 1
}

impl FaultPlan {
    /// The plan in words, with write points mapped onto the clean run's
    /// `writes` writes.
    pub fn describe(&self, writes: u32) -> String {
        let mut lines = Vec::new();
        for f in &self.faults {
            lines.push(match f {
                Fault::Crash {
                    at_write,
                    write_lost,
                } => format!(
                    "crash the worker {} storage write {} (of {writes} in the clean run)",
                    if *write_lost { "just before" } else { "just after" },
                    resolve_point(*at_write, writes)
                ),
                Fault::FailCall { function, nth } => {
                    format!("fail body run {nth} of {function} with a transient error")
                }
                Fault::Zombie { at_write, extra_ms } => format!(
                    "stall the worker at storage write {} for its lease + {extra_ms} ms (a second worker takes over)",
                    resolve_point(*at_write, writes)
                ),
                Fault::ClockJump { at_write, by_ms } => format!(
                    "jump the clock {by_ms} ms forward at storage write {}",
                    resolve_point(*at_write, writes)
                ),
                Fault::StorageFault {
                    at_write,
                    landed,
                    down_ms,
                } => format!(
                    "fail storage write {} ({}), then keep storage away for {down_ms} ms",
                    resolve_point(*at_write, writes),
                    if *landed {
                        "applied, its reply lost"
                    } else {
                        "before it reaches storage"
                    }
                ),
            });
        }
        for (i, s) in self.signals.iter().enumerate() {
            if s.delay_ms > 0 || s.twice {
                lines.push(format!(
                    "deliver signal #{i} after {} ms{}",
                    s.delay_ms,
                    if s.twice { ", twice" } else { "" }
                ));
            }
        }
        if lines.is_empty() {
            "no faults".to_string()
        } else {
            lines.join("; ")
        }
    }
}

impl Fault {
    /// True if the fault can leave a task claimed with no commit (a worker
    /// that dies, stalls, or loses its storage or its leases to a clock
    /// jump), which costs the task an attempt.
    pub(crate) fn may_lose_a_claim(&self) -> bool {
        matches!(
            self,
            Fault::Crash { .. }
                | Fault::Zombie { .. }
                | Fault::ClockJump { .. }
                | Fault::StorageFault { .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_points_wrap_onto_real_writes() {
        assert_eq!(resolve_point(1, 10), 1);
        assert_eq!(resolve_point(10, 10), 10);
        assert_eq!(resolve_point(11, 10), 1);
        assert_eq!(resolve_point(5, 0), 1);
    }
}
