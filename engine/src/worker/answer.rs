//! What the turn loop does with one answer that arrived for an invocation
//! — a delivery from its inbox, a signal, a due timer, a child's hand-off —
//! decided from what its code waits for at the answer's seq. A pure
//! decision, tested here without a backend; the turn loop
//! ([`turns`](super::turns)) acts on it.

use stent_journal::event::Event;
use stent_journal::pause::{PauseReport, SetAsideSignal};
use stent_journal::store::SignalId;
use stent_journal::{ExecutionId, InvocationId, Payload, Seq};
use stent_replay::Outstanding;

/// Where an answer came from, as far as [`Answer::of`] needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A stored delivery (a child's result) from the invocation's inbox.
    Inbox,
    /// A stored signal.
    Signal(SignalId),
    /// A timer that came due.
    Timer,
    /// A child's result handed over in this process.
    Handoff,
}

/// What to do with one answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// A signal whose payload the waiting code cannot decode (an
    /// operator's typo): set aside, never journaled, and the execution
    /// paused until a good one is sent.
    SetAside(SetAside),
    /// A hand-off no call waits for any more (the code stopped waiting, a
    /// lost race): given back, so the child stores its result itself.
    HandBack,
    /// Take it. `consume`: the item is marked taken, stored with the turn
    /// (a stale delivery is dropped that way; a signal nobody waits for is
    /// left for a later wait). `resolve`: the event is journaled and
    /// answers the wait.
    Take {
        /// Mark the item taken.
        consume: bool,
        /// Journal the event and answer the wait.
        resolve: bool,
    },
}

/// A signal set aside: what the pause report says about it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SetAside {
    /// The signal.
    pub id: SignalId,
    /// The signal's name.
    pub name: String,
    /// The seq of the wait.
    pub awaited: Seq,
    /// Why it does not decode.
    pub why: String,
    /// The type the code waits for.
    pub expected_type: &'static str,
}

impl SetAside {
    /// The report that pauses `execution`, whose `invocation` waited.
    pub(super) fn report(self, execution: ExecutionId, invocation: InvocationId) -> PauseReport {
        let SetAside {
            id,
            name,
            awaited,
            why,
            expected_type,
        } = self;
        let text = format!(
            "execution {execution}: signal {name:?} (id {}) does not decode as {expected_type}, \
             the type the code waits for at seq {awaited}: {why}. It was set aside, not \
             delivered. Send a signal {name:?} with a payload of that type, then resume the \
             execution",
            id.0
        );
        PauseReport::signal_set_aside(
            text,
            SetAsideSignal {
                id: id.0,
                name,
                invocation,
                awaited,
                expected_type: expected_type.to_string(),
                why,
            },
        )
    }
}

impl Answer {
    /// Decides for an answer `from` a source, carrying `event` (none: it
    /// only wakes the code), when the code waits for `waited` at the
    /// event's seq (none: it no longer waits there). `check_signal` says
    /// whether a signal's payload fits the type the code waits for at a
    /// seq; it is asked only for a signal that is waited for.
    pub(super) fn of(
        from: Origin,
        event: Option<&Event>,
        waited: Option<&Outstanding>,
        check_signal: impl FnOnce(Seq, &Payload) -> Result<(), (String, &'static str)>,
    ) -> Answer {
        if let (
            Origin::Signal(id),
            Some(Outstanding::Signal { name }),
            Some(Event::SignalReceived { awaited, payload }),
        ) = (from, waited, event)
            && let Err((why, expected_type)) = check_signal(*awaited, payload)
        {
            return Answer::SetAside(SetAside {
                id,
                name: name.clone(),
                awaited: *awaited,
                why,
                expected_type,
            });
        }
        let consume = match from {
            Origin::Inbox => true,
            Origin::Signal(_) => waited.is_some(),
            Origin::Timer => false,
            Origin::Handoff if matches!(waited, Some(Outstanding::Call { .. })) => true,
            Origin::Handoff => return Answer::HandBack,
        };
        Answer::Take {
            consume,
            resolve: event.is_some() && waited.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(awaited: u32) -> Event {
        Event::SignalReceived {
            awaited: Seq(awaited),
            payload: Payload::encode(&7u32).unwrap(),
        }
    }

    fn waiting_signal() -> Outstanding {
        Outstanding::Signal { name: "go".into() }
    }

    fn fits(_: Seq, _: &Payload) -> Result<(), (String, &'static str)> {
        Ok(())
    }

    fn unasked(_: Seq, _: &Payload) -> Result<(), (String, &'static str)> {
        panic!("the payload was checked although nothing waits for the signal")
    }

    #[test]
    fn a_waited_signal_is_consumed_and_journaled() {
        let answer = Answer::of(
            Origin::Signal(SignalId(5)),
            Some(&signal(3)),
            Some(&waiting_signal()),
            fits,
        );
        assert_eq!(
            answer,
            Answer::Take {
                consume: true,
                resolve: true
            }
        );
    }

    #[test]
    fn a_signal_nobody_waits_for_is_left_for_a_later_wait() {
        let answer = Answer::of(Origin::Signal(SignalId(5)), Some(&signal(3)), None, unasked);
        assert_eq!(
            answer,
            Answer::Take {
                consume: false,
                resolve: false
            }
        );
    }

    #[test]
    fn a_signal_that_does_not_decode_is_set_aside() {
        let answer = Answer::of(
            Origin::Signal(SignalId(5)),
            Some(&signal(3)),
            Some(&waiting_signal()),
            |seq, _| {
                assert_eq!(seq, Seq(3));
                Err(("expected u64".into(), "u64"))
            },
        );
        assert_eq!(
            answer,
            Answer::SetAside(SetAside {
                id: SignalId(5),
                name: "go".into(),
                awaited: Seq(3),
                why: "expected u64".into(),
                expected_type: "u64",
            })
        );
    }

    #[test]
    fn a_stale_delivery_is_consumed_but_not_journaled() {
        let delivery = Event::CallCompleted {
            scheduled: Seq(1),
            value: Payload::encode(&1u8).unwrap(),
        };
        assert_eq!(
            Answer::of(Origin::Inbox, Some(&delivery), None, unasked),
            Answer::Take {
                consume: true,
                resolve: false
            }
        );
    }

    #[test]
    fn a_timer_only_resolves_what_waits_for_it() {
        let fired = Event::TimerFired { started: Seq(2) };
        let timer = Outstanding::Timer {
            fire_at: stent_journal::Timestamp(10),
        };
        assert_eq!(
            Answer::of(Origin::Timer, Some(&fired), Some(&timer), unasked),
            Answer::Take {
                consume: false,
                resolve: true
            }
        );
        assert_eq!(
            Answer::of(Origin::Timer, Some(&fired), None, unasked),
            Answer::Take {
                consume: false,
                resolve: false
            }
        );
    }

    #[test]
    fn a_hand_off_is_taken_only_by_a_waiting_call() {
        let done = Event::CallCompleted {
            scheduled: Seq(1),
            value: Payload::encode(&1u8).unwrap(),
        };
        let call = Outstanding::Call {
            child: stent_journal::ExecutionId::new_random().root_invocation(),
        };
        assert_eq!(
            Answer::of(Origin::Handoff, Some(&done), Some(&call), unasked),
            Answer::Take {
                consume: true,
                resolve: true
            }
        );
        assert_eq!(
            Answer::of(Origin::Handoff, Some(&done), None, unasked),
            Answer::HandBack
        );
        assert_eq!(
            Answer::of(
                Origin::Handoff,
                Some(&done),
                Some(&waiting_signal()),
                unasked
            ),
            Answer::HandBack
        );
    }
}
