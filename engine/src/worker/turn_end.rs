//! How a turn ends once nothing more can be applied to its code: the
//! invocation stays resident (its lease held, its future in memory) or
//! parks (its lease released, due again at its next timer or its
//! deadline), and the turn is stored or not. Pure decisions, tested here
//! without a backend; the turn loop ([`turns`](super::turns)) acts on them.

use std::time::Duration;

use stent_journal::store::TaskDisposition;
use stent_journal::{Seq, Timestamp};
use stent_replay::Outstanding;

/// What is held in memory and not stored yet, as far as
/// [`TurnEnd::must_commit`] needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Unstored {
    /// Events the code appended this turn.
    pub events: bool,
    /// Inbox deliveries or signals taken this turn.
    pub consumed: bool,
    /// Results of children handed over to it, or inline steps' ends.
    pub results: bool,
    /// It was claimed (not started here) and has committed nothing since.
    pub checkpoint: bool,
}

/// The end of a turn: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TurnEnd {
    /// The code awaits real I/O (no durable effect outstanding): it keeps
    /// its slot and stays, even while the worker drains.
    pub io_wait: bool,
    /// It stays resident with its lease held; otherwise it parks.
    pub stay: bool,
    /// Its earliest outstanding timer.
    pub next_timer: Option<Timestamp>,
    /// When it is due again if it parks: its next timer or its deadline,
    /// whichever comes first (a deadline wakes it to time it out).
    pub run_at: Option<Timestamp>,
}

impl TurnEnd {
    /// Decides from what the code waits for (`outstanding`; `behind`: it
    /// is still catching up with its journal), whether the worker drains,
    /// how near a timer keeps an invocation resident (`sticky_timer`), and
    /// the execution's `deadline`, at `now`.
    pub(super) fn of(
        outstanding: &[(Seq, Outstanding)],
        behind: bool,
        draining: bool,
        sticky_timer: Duration,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> TurnEnd {
        let io_wait = behind || outstanding.is_empty();
        let has_calls = outstanding
            .iter()
            .any(|(_, o)| matches!(o, Outstanding::Call { .. }));
        let next_timer = outstanding
            .iter()
            .filter_map(|(_, o)| match o {
                Outstanding::Timer { fire_at } => Some(*fire_at),
                _ => None,
            })
            .min();
        let timer_is_near = next_timer.is_some_and(|t| {
            t.millis().saturating_sub(now.millis()) <= sticky_timer.as_millis() as i64
        });
        let stay = io_wait || (!draining && (has_calls || timer_is_near));
        let run_at = match (next_timer, deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        TurnEnd {
            io_wait,
            stay,
            next_timer,
            run_at,
        }
    }

    /// True if the turn must be stored now: it holds something unstored,
    /// or it parks (releasing the lease is a write). A claimed invocation's
    /// first durable wait is stored too, so the claim counts as healthy,
    /// but not while it awaits I/O (that is no durable point).
    pub(super) fn must_commit(&self, unstored: Unstored) -> bool {
        unstored.events
            || unstored.consumed
            || unstored.results
            || (unstored.checkpoint && !self.io_wait)
            || !self.stay
    }

    /// The task's disposition in the stored turn: a lease held for another
    /// `lease` from `now`, or parked until [`TurnEnd::run_at`].
    pub(super) fn disposition(&self, now: Timestamp, lease: Duration) -> TaskDisposition {
        match self.stay {
            true => TaskDisposition::Hold {
                lease_until: now.saturating_add(lease),
            },
            false => TaskDisposition::Park {
                run_at: self.run_at,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STICKY: Duration = Duration::from_millis(100);
    const NOW: Timestamp = Timestamp(10_000);

    fn call() -> (Seq, Outstanding) {
        (
            Seq(1),
            Outstanding::Call {
                child: stent_journal::ExecutionId::from_key("turn-end").root_invocation(),
            },
        )
    }

    fn timer(in_ms: i64) -> (Seq, Outstanding) {
        (
            Seq(2),
            Outstanding::Timer {
                fire_at: Timestamp(NOW.0 + in_ms),
            },
        )
    }

    fn signal() -> (Seq, Outstanding) {
        (Seq(3), Outstanding::Signal { name: "go".into() })
    }

    fn end(outstanding: &[(Seq, Outstanding)], draining: bool) -> TurnEnd {
        TurnEnd::of(outstanding, false, draining, STICKY, None, NOW)
    }

    #[test]
    fn code_awaiting_io_stays_even_while_draining() {
        for draining in [false, true] {
            let e = end(&[], draining);
            assert!(e.io_wait && e.stay, "{e:?}");
            let behind = TurnEnd::of(&[call()], true, draining, STICKY, None, NOW);
            assert!(behind.io_wait && behind.stay, "{behind:?}");
        }
    }

    #[test]
    fn a_call_outstanding_stays_unless_the_worker_drains() {
        let e = end(&[call()], false);
        assert!(e.stay && !e.io_wait);
        let drained = end(&[call()], true);
        assert!(!drained.stay);
        assert_eq!(drained.run_at, None, "a parked call waits for its delivery");
    }

    #[test]
    fn a_near_timer_stays_and_a_far_one_parks_until_it_fires() {
        assert!(end(&[timer(100)], false).stay);
        let far = end(&[timer(101)], false);
        assert!(!far.stay);
        assert_eq!(far.run_at, Some(Timestamp(NOW.0 + 101)));
        assert_eq!(
            far.disposition(NOW, Duration::from_secs(1)),
            TaskDisposition::Park {
                run_at: Some(Timestamp(NOW.0 + 101))
            }
        );
        // The earliest of several timers.
        let two = end(&[timer(5_000), timer(700)], false);
        assert_eq!(two.next_timer, Some(Timestamp(NOW.0 + 700)));
    }

    #[test]
    fn a_parked_invocation_is_due_at_its_deadline_if_that_comes_first() {
        let deadline = Some(Timestamp(NOW.0 + 300));
        let e = TurnEnd::of(&[timer(5_000)], false, false, STICKY, deadline, NOW);
        assert_eq!(e.run_at, deadline);
        let signal_only = TurnEnd::of(&[signal()], false, false, STICKY, deadline, NOW);
        assert!(!signal_only.stay);
        assert_eq!(signal_only.run_at, deadline);
        assert_eq!(end(&[signal()], false).run_at, None);
    }

    #[test]
    fn staying_holds_the_lease_for_another_lease() {
        let lease = Duration::from_secs(30);
        assert_eq!(
            end(&[call()], false).disposition(NOW, lease),
            TaskDisposition::Hold {
                lease_until: NOW.saturating_add(lease)
            }
        );
    }

    #[test]
    fn a_turn_is_stored_when_it_holds_something_or_parks() {
        let staying = end(&[call()], false);
        assert!(!staying.must_commit(Unstored::default()));
        for unstored in [
            Unstored {
                events: true,
                ..Unstored::default()
            },
            Unstored {
                consumed: true,
                ..Unstored::default()
            },
            Unstored {
                results: true,
                ..Unstored::default()
            },
            Unstored {
                checkpoint: true,
                ..Unstored::default()
            },
        ] {
            assert!(staying.must_commit(unstored), "{unstored:?}");
        }
        // Parking releases the lease: always a write.
        assert!(end(&[signal()], false).must_commit(Unstored::default()));
        // Awaiting I/O is no durable point: no checkpoint yet.
        let io = end(&[], false);
        let checkpoint = Unstored {
            checkpoint: true,
            ..Unstored::default()
        };
        assert!(!io.must_commit(checkpoint));
    }
}
