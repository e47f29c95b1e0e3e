//! The report a worker stores when code stops matching its journal: the
//! replay debugger's view of the divergence (seq, recorded event, asked
//! event, field diffs, reorders), as text and as structure.

use stent_journal::pause::{DivergenceKind, PauseReport, PausedDivergence};
use stent_journal::{Event, ExecutionId, InvocationId, Seq};
use stent_replay::DriverError;

use super::diff::describe_event;
use super::replay::{DivergenceReason, diffs_for, reason_for};

/// Events are described in reports up to this many characters.
const EVENT_TEXT: usize = 200;

/// The pause report for a driver of `function` (in `execution`) that
/// stopped with `error`, given the invocation's journal as far as it goes.
pub(crate) fn report_of_stop(
    execution: ExecutionId,
    function: &str,
    error: &DriverError,
    journal: &[Event],
) -> PauseReport {
    match error {
        DriverError::Diverged(d) => {
            let divergence = paused_divergence(
                d.invocation,
                function,
                d.seq,
                d.recorded.as_ref(),
                d.asked.as_ref(),
                journal,
            );
            let text = format!("execution {execution}: {}", sentence(&divergence));
            PauseReport::diverged(text, divergence)
        }
        DriverError::Corrupt {
            invocation,
            seq,
            reason,
        } => {
            let divergence = PausedDivergence {
                invocation: *invocation,
                function: function.to_string(),
                seq: *seq,
                kind: DivergenceKind::Inconsistent,
                recorded: journal
                    .get(seq.0 as usize)
                    .map(|e| describe_event(e, EVENT_TEXT)),
                asked: None,
                recorded_at: None,
                diffs: Vec::new(),
                patch: None,
            };
            let text = format!(
                "execution {execution}: the journal of invocation {invocation} ({function}) is \
                 inconsistent at seq {seq}: {reason}"
            );
            PauseReport::diverged(text, divergence)
        }
        other => PauseReport::text(format!("execution {execution}: {other}")),
    }
}

/// Compares what the journal `recorded` at `seq` with what the code `asked`.
pub(crate) fn paused_divergence(
    invocation: InvocationId,
    function: &str,
    seq: Seq,
    recorded: Option<&Event>,
    asked: Option<&Event>,
    journal: &[Event],
) -> PausedDivergence {
    let reason = match asked {
        Some(a) => reason_for(journal, seq, a),
        None => DivergenceReason::Stuck,
    };
    let diffs = diffs_for(recorded, asked, &reason);
    let mut patch = None;
    let (kind, recorded_at) = match reason {
        DivergenceReason::Reordered { recorded_at } => {
            (DivergenceKind::Reordered, Some(recorded_at))
        }
        DivergenceReason::Result => (DivergenceKind::Result, None),
        DivergenceReason::Stuck => (DivergenceKind::Stuck, None),
        DivergenceReason::PatchRemoved { patch: p } => {
            patch = Some(p);
            (DivergenceKind::PatchRemoved, None)
        }
        _ => (DivergenceKind::Mismatch, None),
    };
    PausedDivergence {
        invocation,
        function: function.to_string(),
        seq,
        kind,
        recorded: recorded.map(|e| describe_event(e, EVENT_TEXT)),
        asked: asked.map(|e| describe_event(e, EVENT_TEXT)),
        recorded_at,
        diffs,
        patch,
    }
}

/// The divergence in one sentence, without its diffs.
pub(crate) fn sentence(d: &PausedDivergence) -> String {
    let recorded = d
        .recorded
        .as_deref()
        .unwrap_or("nothing (the journal ends there)");
    let asked = d.asked.as_deref().unwrap_or("nothing");
    let place = format!(
        "non-determinism in invocation {} ({}) at seq {}",
        d.invocation, d.function, d.seq
    );
    match (d.kind, d.recorded_at) {
        (DivergenceKind::Reordered, Some(at)) => format!(
            "{place}: calls reordered: the code asked for {asked}, which the journal recorded \
             later, at seq {at}; at seq {} the journal recorded {recorded} (moved, or no longer \
             made)",
            d.seq
        ),
        (DivergenceKind::Result, _) => {
            format!("{place}: the journal recorded {recorded}, but the code ended with {asked}")
        }
        (DivergenceKind::PatchRemoved, _) => format!(
            "{place}: patch {:?} was removed too early: this execution started before the patch \
             and took its old branch (the journal recorded {recorded} where the new branch \
             records the patch's marker); put the old branch back behind \
             `Stent::patched({:?})` until no execution needs it",
            d.patch.as_deref().unwrap_or("?"),
            d.patch.as_deref().unwrap_or("?"),
        ),
        (DivergenceKind::Stuck, _) => format!(
            "{place}: the journal recorded {recorded}, but the code waits for something else"
        ),
        _ => format!("{place}: the journal recorded {recorded}, but the code asked for {asked}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stent_journal::{CallKey, Payload};

    fn call(function: &str, arg: u32) -> Event {
        let args = Payload::encode(&(arg,)).unwrap();
        Event::CallScheduled {
            function: function.into(),
            version: None,
            call_key: CallKey::new(function, None, &args),
            args,
            child: ExecutionId::new_random().root_invocation(),
        }
    }

    #[test]
    fn a_call_asked_for_that_the_journal_has_later_is_a_reorder() {
        let started = Event::Started {
            function: "flow".into(),
            version: None,
            args: Payload::encode(&()).unwrap(),
            parent: None,
            forked_from: None,
        };
        let journal = vec![started, call("a", 1), call("b", 2)];
        let root = ExecutionId::new_random().root_invocation();
        let d = paused_divergence(
            root,
            "flow",
            Seq(1),
            journal.get(1),
            Some(&call("b", 2)),
            &journal,
        );
        assert_eq!(d.kind, DivergenceKind::Reordered);
        assert_eq!(d.recorded_at, Some(Seq(2)));
        assert!(d.diffs.is_empty());
        assert!(sentence(&d).contains("calls reordered"), "{}", sentence(&d));

        // The same call with another argument is a mismatch, with a diff.
        let d = paused_divergence(
            root,
            "flow",
            Seq(1),
            journal.get(1),
            Some(&call("a", 5)),
            &journal,
        );
        assert_eq!(d.kind, DivergenceKind::Mismatch);
        assert_eq!(d.recorded_at, None);
        assert_eq!(d.diffs.len(), 1, "{:?}", d.diffs);
        assert_eq!(d.diffs[0].to_string(), "args[0]: 1 -> 5");
    }
}
