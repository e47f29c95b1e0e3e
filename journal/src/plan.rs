//! What one turn writes, as an ordered list of storage effects every
//! backend applies the same way.
//!
//! A [`TurnCommit`] says what a turn stores; [`TurnCommit::plan`] says in
//! which order, and what its disposition implies besides the task row (a
//! delivery to the parent, the execution's outcome, a pause report, a dead
//! letter, a recorded failure). Each backend matches on [`Effect`]
//! exhaustively, so an effect added here does not compile until every
//! backend applies it; the conformance suite checks they apply it alike.
//! The refusals a plan can meet are worded here too ([`conflict`]), so a
//! backend's error reads the same whatever stores it.
//!
//! ```
//! use stent_journal::plan::Effect;
//! use stent_journal::store::{TaskDisposition, TurnCommit};
//! use stent_journal::{ExecutionId, LeaseEpoch, Timestamp};
//!
//! let turn = TurnCommit::bare(
//!     ExecutionId::new_random().root_invocation(),
//!     LeaseEpoch(1),
//!     Timestamp(0),
//!     TaskDisposition::Pause { report: "diverged".into() },
//! );
//! let plan: Vec<Effect> = turn.plan().collect();
//! assert!(matches!(plan[0], Effect::Fence));
//! assert!(matches!(plan[1], Effect::PauseExecution("diverged")));
//! ```

use crate::codec::CallKey;
use crate::ids::{ExecutionId, InvocationId};
use crate::store::{
    Delivery, ExecutionOutcome, InboxId, NewEvent, NewInvocation, SignalId, StoreError,
    TaskDisposition, TurnCommit,
};

/// One storage effect of a turn, in the order of [`TurnCommit::plan`].
/// Empty effects (no events, no spawns, …) are left out of a plan.
#[derive(Debug, Clone, Copy)]
pub enum Effect<'a> {
    /// The turn's task row, matched at the turn's epoch (no match: the
    /// lease is lost and nothing of the turn is stored) and changed as its
    /// [`TaskDisposition`] says: lease extended, released to wait or to run
    /// again, done, paused, dead. Always first: nothing else in a turn
    /// changes the task's lease or wake flag, so applying it first is
    /// applying it last, and a lost lease is found before anything is
    /// written.
    Fence,
    /// Events appended to the invocation's journal.
    Events(&'a [NewEvent]),
    /// Child invocations created (a task each, with its `Started` event).
    Spawn(&'a [NewInvocation]),
    /// Inbox items of this invocation now in its journal: removed. Each
    /// must exist ([`conflict::inbox_missing`]).
    ConsumeInbox(&'a [InboxId]),
    /// Signals of the execution now consumed by this invocation. Each must
    /// be unconsumed ([`conflict::signals_missing`]).
    ConsumeSignals(&'a [SignalId]),
    /// Cache entries: an existing one is kept (first writer wins).
    CachePut(&'a [(CallKey, Vec<u8>)]),
    /// Idempotency keys of this invocation with their results. Each must be
    /// held by it ([`conflict::idempotency_not_held`]).
    IdempotencyDone(&'a [(String, Vec<u8>)]),
    /// Idempotency keys of this invocation released (a key it no longer
    /// holds is left alone).
    IdempotencyRelease(&'a [String]),
    /// A retry: the attempt's failure kept on the task (as its last
    /// failure, and in its bounded history).
    RecordFailure(&'a str),
    /// A finished child's result, put in its parent's inbox; the parent is
    /// woken.
    Deliver(&'a Delivery),
    /// A finished root: the execution's outcome.
    FinishExecution(&'a ExecutionOutcome),
    /// A pause: the execution is paused with this report.
    PauseExecution(&'a str),
    /// A dead letter with this reason, for the task (its function, queue
    /// and retries come from the task row).
    DeadLetter(&'a str),
}

impl Effect<'_> {
    /// The effect's name (for logs and tests).
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Fence => "fence",
            Effect::Events(_) => "events",
            Effect::Spawn(_) => "spawn",
            Effect::ConsumeInbox(_) => "consume_inbox",
            Effect::ConsumeSignals(_) => "consume_signals",
            Effect::CachePut(_) => "cache_put",
            Effect::IdempotencyDone(_) => "idempotency_done",
            Effect::IdempotencyRelease(_) => "idempotency_release",
            Effect::RecordFailure(_) => "record_failure",
            Effect::Deliver(_) => "deliver",
            Effect::FinishExecution(_) => "finish_execution",
            Effect::PauseExecution(_) => "pause_execution",
            Effect::DeadLetter(_) => "dead_letter",
        }
    }
}

impl Effect<'_> {
    /// True for the effects a plain turn writes ([`TurnCommit::is_plain`]):
    /// rows of its own execution's tasks, journals and inbox. Cache and
    /// idempotency keys and signals are shared with other executions, and a
    /// recorded failure, a pause or a dead letter is rare enough for the
    /// general path.
    pub fn is_plain(&self) -> bool {
        match self {
            Effect::Fence
            | Effect::Events(_)
            | Effect::Spawn(_)
            | Effect::ConsumeInbox(_)
            | Effect::Deliver(_)
            | Effect::FinishExecution(_) => true,
            Effect::ConsumeSignals(_)
            | Effect::CachePut(_)
            | Effect::IdempotencyDone(_)
            | Effect::IdempotencyRelease(_)
            | Effect::RecordFailure(_)
            | Effect::PauseExecution(_)
            | Effect::DeadLetter(_) => false,
        }
    }
}

impl TurnCommit {
    /// The turn's storage effects in the order every backend applies them:
    /// the fence, the journal and the children, what the turn consumed,
    /// cache and idempotency writes, then what the disposition implies
    /// beyond the task row.
    ///
    /// An iterator over the turn's own fields: it allocates nothing, and
    /// the backends walk it on every commit.
    pub fn plan(&self) -> impl Iterator<Item = Effect<'_>> {
        fn unless_empty<'a, T>(
            items: &'a [T],
            effect: fn(&'a [T]) -> Effect<'a>,
        ) -> Option<Effect<'a>> {
            (!items.is_empty()).then(|| effect(items))
        }
        // What the disposition implies beyond the task row: at most two.
        let ends = match &self.disposition {
            TaskDisposition::Hold { .. } | TaskDisposition::Park { .. } => [None, None],
            TaskDisposition::Retry { error, .. } => [Some(Effect::RecordFailure(error)), None],
            TaskDisposition::Finish { deliver, execution } => [
                deliver.as_ref().map(Effect::Deliver),
                execution.as_ref().map(Effect::FinishExecution),
            ],
            TaskDisposition::Pause { report } => [Some(Effect::PauseExecution(report)), None],
            TaskDisposition::DeadLetter { reason } => [Some(Effect::DeadLetter(reason)), None],
        };
        [
            Some(Effect::Fence),
            unless_empty(&self.events, Effect::Events),
            unless_empty(&self.spawn, Effect::Spawn),
            unless_empty(&self.consumed_inbox, Effect::ConsumeInbox),
            unless_empty(&self.consumed_signals, Effect::ConsumeSignals),
            unless_empty(&self.cache_put, Effect::CachePut),
            unless_empty(&self.idempotency_done, Effect::IdempotencyDone),
            unless_empty(&self.idempotency_released, Effect::IdempotencyRelease),
        ]
        .into_iter()
        .chain(ends)
        .flatten()
    }
}

/// The refusals a turn's effects can meet, worded once for every backend.
pub mod conflict {
    use super::*;

    /// Some of `ids`, inbox items of `invocation`, do not exist.
    pub fn inbox_missing(invocation: InvocationId, ids: &[InboxId]) -> StoreError {
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        StoreError::Conflict(format!(
            "inbox items {ids:?} of invocation {invocation}: some do not exist (already consumed?)"
        ))
    }

    /// Some of `ids`, signals of `execution`, are missing or consumed.
    pub fn signals_missing(execution: ExecutionId, ids: &[SignalId]) -> StoreError {
        let ids: Vec<i64> = ids.iter().map(|s| s.0).collect();
        StoreError::Conflict(format!(
            "signals {ids:?} of execution {execution}: some are missing or already consumed"
        ))
    }

    /// `key` is not held by `invocation`.
    pub fn idempotency_not_held(key: &str, invocation: InvocationId) -> StoreError {
        StoreError::Conflict(format!(
            "idempotency key {key:?} is not held by invocation {invocation}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExecutionStatus;
    use crate::{LeaseEpoch, Timestamp};

    fn turn(disposition: TaskDisposition) -> TurnCommit {
        TurnCommit::bare(
            ExecutionId::new_random().root_invocation(),
            LeaseEpoch(3),
            Timestamp(10),
            disposition,
        )
    }

    fn names(turn: &TurnCommit) -> Vec<&'static str> {
        turn.plan().map(|e| e.name()).collect()
    }

    #[test]
    fn a_bare_hold_or_park_is_its_fence_alone() {
        let hold = turn(TaskDisposition::Hold {
            lease_until: Timestamp(99),
        });
        assert_eq!(names(&hold), ["fence"]);
        let park = turn(TaskDisposition::Park { run_at: None });
        assert_eq!(names(&park), ["fence"]);
    }

    #[test]
    fn every_part_of_a_turn_comes_in_one_order() {
        let full = TurnCommit {
            events: vec![NewEvent {
                seq: crate::Seq(1),
                kind: crate::EventKind::CallScheduled,
                call_key: None,
                bytes: vec![1],
            }],
            consumed_inbox: vec![InboxId(4)],
            consumed_signals: vec![SignalId(5)],
            cache_put: vec![(
                CallKey::new("f", None, &crate::Payload::from_bytes(vec![0xf6])),
                vec![2],
            )],
            idempotency_done: vec![("k".into(), vec![3])],
            idempotency_released: vec!["j".into()],
            ..turn(TaskDisposition::Finish {
                deliver: Some(Delivery {
                    parent: ExecutionId::new_random().root_invocation(),
                    event: vec![6],
                }),
                execution: Some(ExecutionOutcome {
                    status: ExecutionStatus::Completed,
                    terminal_event: vec![7],
                }),
            })
        };
        assert_eq!(
            names(&full),
            [
                "fence",
                "events",
                "consume_inbox",
                "consume_signals",
                "cache_put",
                "idempotency_done",
                "idempotency_release",
                "deliver",
                "finish_execution",
            ]
        );
    }

    #[test]
    fn each_disposition_adds_what_it_implies_last() {
        let retry = turn(TaskDisposition::Retry {
            run_at: Timestamp(20),
            error: "boom".into(),
        });
        assert!(matches!(
            retry.plan().collect::<Vec<_>>()[..],
            [Effect::Fence, Effect::RecordFailure("boom")]
        ));
        let dead = turn(TaskDisposition::DeadLetter {
            reason: "out of attempts".into(),
        });
        assert!(matches!(
            dead.plan().collect::<Vec<_>>()[..],
            [Effect::Fence, Effect::DeadLetter("out of attempts")]
        ));
        let pause = turn(TaskDisposition::Pause {
            report: "diverged".into(),
        });
        assert!(matches!(
            pause.plan().collect::<Vec<_>>()[..],
            [Effect::Fence, Effect::PauseExecution("diverged")]
        ));
        let done = turn(TaskDisposition::Finish {
            deliver: None,
            execution: None,
        });
        assert_eq!(names(&done), ["fence"]);
    }

    #[test]
    fn a_plain_turn_writes_only_its_executions_rows() {
        let finish = turn(TaskDisposition::Finish {
            deliver: Some(Delivery {
                parent: ExecutionId::new_random().root_invocation(),
                event: vec![1],
            }),
            execution: None,
        });
        let plain = [
            turn(TaskDisposition::Hold {
                lease_until: Timestamp(1),
            }),
            turn(TaskDisposition::Park { run_at: None }),
            TurnCommit {
                consumed_inbox: vec![InboxId(1)],
                ..finish.clone()
            },
        ];
        for t in &plain {
            assert!(t.is_plain(), "{:?}", names(t));
        }
        let keyed = [
            TurnCommit {
                consumed_signals: vec![SignalId(2)],
                ..finish.clone()
            },
            TurnCommit {
                idempotency_released: vec!["k".into()],
                ..finish.clone()
            },
            turn(TaskDisposition::Retry {
                run_at: Timestamp(3),
                error: "e".into(),
            }),
            turn(TaskDisposition::Pause { report: "r".into() }),
            turn(TaskDisposition::DeadLetter { reason: "d".into() }),
        ];
        for t in &keyed {
            assert!(!t.is_plain(), "{:?}", names(t));
        }
    }

    #[test]
    fn conflicts_name_what_was_refused() {
        let inv = ExecutionId::new_random().root_invocation();
        let text = conflict::inbox_missing(inv, &[InboxId(1), InboxId(2)]).to_string();
        assert!(
            text.contains("inbox items [1, 2]") && text.contains(&inv.to_string()),
            "{text}"
        );
        let text = conflict::idempotency_not_held("order-7", inv).to_string();
        assert!(text.contains("\"order-7\""), "{text}");
    }
}
