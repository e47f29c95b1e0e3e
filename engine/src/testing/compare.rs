//! Journals in a form two runs can be compared in, and the invariants one
//! run's journals must hold.
//!
//! Invocations are named by their path from the root (the command index of
//! each `CallScheduled` on the way), not by id, so two runs of the same
//! workflow name them alike. Each command is paired with its answer, so
//! the order in which independent answers arrived (which children of a
//! `gather` finished first) does not count as a difference; timestamps and
//! the values of recorded clock/random reads do not count either.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use stent_journal::event::{ContextWrite, Event};
use stent_journal::store::JournalRow;
use stent_journal::{CallKey, Failure, InvocationId, Payload, Seq};

use crate::debugger::describe_event;
use crate::debugger::diff::render_value;

/// Path of an invocation from the root: the command index of each call.
pub(crate) type Path = Vec<u32>;

/// One command of a journal with its answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Started {
        function: String,
        version: Option<String>,
        args: Payload,
    },
    Call {
        /// The callee, for messages (the call key already names it).
        function: Option<String>,
        call_key: CallKey,
        answer: Option<Result<Payload, Failure>>,
    },
    Timer {
        duration_ms: u64,
        fired: bool,
    },
    Signal {
        name: String,
        payload: Option<Payload>,
    },
    Write(ContextWrite),
    /// A recorded clock, uuid or random read (its value is not compared).
    SideEffect,
    /// A patch's marker: the run took the patch's new branch.
    Patch(String),
    /// The invocation's terminal event.
    End(Event),
    /// An event kind this harness does not know.
    Other(String),
}

impl Step {
    /// The step in words, payloads as readable JSON-like text:
    /// `call shop::charge [key 3f2a…] -> ok "receipt-7"`.
    pub(crate) fn describe(&self) -> String {
        const MAX: usize = 200;
        let outcome = |r: &Result<Payload, Failure>| match r {
            Ok(v) => format!("ok {}", render_value(v, MAX)),
            Err(f) => format!(
                "err {}",
                describe_event(&Event::Failed { failure: f.clone() }, MAX)
                    .trim_start_matches("failed ")
            ),
        };
        match self {
            Step::Started {
                function,
                version,
                args,
            } => format!(
                "started {function}{} with {}",
                version
                    .as_deref()
                    .map(|v| format!("@{v}"))
                    .unwrap_or_default(),
                render_value(args, MAX)
            ),
            Step::Call {
                function,
                call_key,
                answer,
            } => format!(
                "call {}[key {}] -> {}",
                function
                    .as_deref()
                    .map(|f| format!("{f} "))
                    .unwrap_or_default(),
                call_key.short(),
                answer.as_ref().map_or_else(|| "no answer".into(), outcome)
            ),
            Step::Timer { duration_ms, fired } => format!(
                "timer {} ({})",
                stent_journal::format_duration(std::time::Duration::from_millis(*duration_ms)),
                if *fired { "fired" } else { "not fired" }
            ),
            Step::Signal { name, payload } => format!(
                "signal {name:?} -> {}",
                payload
                    .as_ref()
                    .map_or_else(|| "not received".into(), |p| render_value(p, MAX))
            ),
            Step::Write(write) => describe_event(
                &Event::ContextWrite {
                    write: write.clone(),
                },
                MAX,
            ),
            Step::SideEffect => "a recorded clock, uuid or random read".into(),
            Step::Patch(patch) => format!("the new branch of patch {patch:?}"),
            Step::End(event) => describe_event(event, MAX),
            Step::Other(kind) => format!("a {kind} event"),
        }
    }
}

/// One execution's journals, normalized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalized {
    pub invocations: BTreeMap<Path, Vec<Step>>,
    /// Function of each invocation, for messages.
    pub functions: BTreeMap<Path, String>,
    /// Paths of calls answered from the cache (no child invocation).
    pub cache_hits: BTreeSet<Path>,
}

/// Normalizes the journals of one execution and reports every broken
/// invariant into `problems`.
pub(crate) fn normalize(
    root: InvocationId,
    groups: Vec<(InvocationId, Vec<JournalRow>)>,
    problems: &mut Vec<String>,
) -> Normalized {
    let mut journals: HashMap<InvocationId, Vec<JournalRow>> = groups.into_iter().collect();
    let mut out = Normalized::default();
    let mut queue: VecDeque<(InvocationId, Path)> = VecDeque::from([(root, Vec::new())]);
    while let Some((invocation, path)) = queue.pop_front() {
        let Some(rows) = journals.remove(&invocation) else {
            problems.push(format!(
                "invocation {path:?} ({invocation}) was scheduled but has no journal"
            ));
            continue;
        };
        let mut steps: Vec<Step> = Vec::new();
        // seq of a command -> its index in `steps`.
        let mut command_at: HashMap<Seq, usize> = HashMap::new();
        let mut answered: BTreeSet<usize> = BTreeSet::new();
        let mut ended = false;
        for (i, row) in rows.iter().enumerate() {
            let at = format!("invocation {path:?} seq {}", row.seq);
            if row.seq.0 as usize != i {
                problems.push(format!("{at}: expected seq {i} (a gap or a duplicate)"));
            }
            let event = match Event::decode(&row.bytes) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("{at}: does not decode: {e}"));
                    continue;
                }
            };
            if ended {
                problems.push(format!("{at}: {} after the terminal event", event.kind()));
            }
            if i == 0 && !matches!(event, Event::Started { .. }) {
                problems.push(format!("{at}: the journal does not start with Started"));
            }
            let mut answer = |scheduled: Seq, what: &str, problems: &mut Vec<String>| {
                let index = command_at.get(&scheduled).copied();
                match index {
                    None => problems.push(format!(
                        "{at}: {what} answers seq {scheduled}, which holds no command"
                    )),
                    Some(index) if !answered.insert(index) => problems.push(format!(
                        "{at}: {what} answers seq {scheduled} a second time (recorded twice)"
                    )),
                    Some(index) => return Some(index),
                }
                None
            };
            match event {
                Event::Started {
                    function,
                    version,
                    args,
                    ..
                } => {
                    if i != 0 {
                        problems.push(format!("{at}: a second Started event"));
                    }
                    out.functions.insert(path.clone(), function.clone());
                    steps.push(Step::Started {
                        function,
                        version,
                        args,
                    });
                }
                Event::CallScheduled {
                    function,
                    call_key,
                    child,
                    ..
                } => {
                    let index = steps.len();
                    command_at.insert(row.seq, index);
                    let mut child_path = path.clone();
                    child_path.push(index as u32);
                    queue.push_back((child, child_path));
                    steps.push(Step::Call {
                        function: Some(function),
                        call_key,
                        answer: None,
                    });
                }
                Event::CacheHit {
                    call_key,
                    function,
                    value,
                    ..
                } => {
                    let mut child_path = path.clone();
                    child_path.push(steps.len() as u32);
                    out.cache_hits.insert(child_path);
                    steps.push(Step::Call {
                        function,
                        call_key,
                        answer: Some(Ok(value)),
                    });
                }
                Event::CallCompleted { scheduled, value } => {
                    if let Some(index) = answer(scheduled, "CallCompleted", problems) {
                        match &mut steps[index] {
                            Step::Call { answer, .. } => *answer = Some(Ok(value)),
                            other => problems.push(format!(
                                "{at}: CallCompleted answers {}, not a call",
                                other.describe()
                            )),
                        }
                    }
                }
                Event::CallFailed { scheduled, failure } => {
                    if let Some(index) = answer(scheduled, "CallFailed", problems) {
                        match &mut steps[index] {
                            Step::Call { answer, .. } => *answer = Some(Err(failure)),
                            other => problems.push(format!(
                                "{at}: CallFailed answers {}, not a call",
                                other.describe()
                            )),
                        }
                    }
                }
                Event::TimerStarted { duration_ms, .. } => {
                    command_at.insert(row.seq, steps.len());
                    steps.push(Step::Timer {
                        duration_ms,
                        fired: false,
                    });
                }
                Event::TimerFired { started } => {
                    if let Some(index) = answer(started, "TimerFired", problems) {
                        match &mut steps[index] {
                            Step::Timer { fired, .. } => *fired = true,
                            other => problems.push(format!(
                                "{at}: TimerFired answers {}, not a timer",
                                other.describe()
                            )),
                        }
                    }
                }
                Event::SignalAwaited { name } => {
                    command_at.insert(row.seq, steps.len());
                    steps.push(Step::Signal {
                        name,
                        payload: None,
                    });
                }
                Event::SignalReceived { awaited, payload } => {
                    if let Some(index) = answer(awaited, "SignalReceived", problems) {
                        match &mut steps[index] {
                            Step::Signal { payload: slot, .. } => *slot = Some(payload),
                            other => problems.push(format!(
                                "{at}: SignalReceived answers {}, not a signal wait",
                                other.describe()
                            )),
                        }
                    }
                }
                Event::ContextWrite { write } => steps.push(Step::Write(write)),
                Event::SideEffect { .. } => steps.push(Step::SideEffect),
                Event::PatchMarker { patch } => steps.push(Step::Patch(patch)),
                e @ (Event::Completed { .. }
                | Event::Failed { .. }
                | Event::Cancelled { .. }
                | Event::TimedOut { .. }) => {
                    ended = true;
                    steps.push(Step::End(e));
                }
                other => steps.push(Step::Other(other.kind().to_string())),
            }
        }
        out.invocations.insert(path, steps);
    }
    for (invocation, rows) in journals {
        problems.push(format!(
            "invocation {invocation} has a journal of {} events but no call schedules it",
            rows.len()
        ));
    }
    out
}

/// The first difference between two runs' journals of one execution.
pub(crate) fn first_difference(clean: &Normalized, faulty: &Normalized) -> Option<String> {
    let under_cache_hit = |path: &Path| {
        (1..=path.len()).any(|n| {
            let prefix = path[..n].to_vec();
            clean.cache_hits.contains(&prefix) || faulty.cache_hits.contains(&prefix)
        })
    };
    let paths: BTreeSet<&Path> = clean
        .invocations
        .keys()
        .chain(faulty.invocations.keys())
        .collect();
    for path in paths {
        if under_cache_hit(path) {
            continue;
        }
        let name = clean
            .functions
            .get(path)
            .or_else(|| faulty.functions.get(path))
            .map(String::as_str)
            .unwrap_or("?");
        let (a, b) = match (clean.invocations.get(path), faulty.invocations.get(path)) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => {
                return Some(format!(
                    "invocation {path:?} ({name}) exists in the clean run only"
                ));
            }
            (None, _) => {
                return Some(format!(
                    "invocation {path:?} ({name}) exists in the faulty run only"
                ));
            }
        };
        for i in 0..a.len().max(b.len()) {
            let (x, y) = (a.get(i), b.get(i));
            if !same_step(x, y) {
                let show = |s: Option<&Step>| s.map_or_else(|| "nothing".into(), Step::describe);
                return Some(format!(
                    "invocation {path:?} ({name}), command {i}: clean run {}, faulty run {}",
                    show(x),
                    show(y)
                ));
            }
        }
    }
    None
}

fn same_step(a: Option<&Step>, b: Option<&Step>) -> bool {
    match (a, b) {
        // Whether a call was answered from the cache or ran is not compared.
        (
            Some(Step::Call {
                call_key: k1,
                answer: a1,
                ..
            }),
            Some(Step::Call {
                call_key: k2,
                answer: a2,
                ..
            }),
        ) => k1 == k2 && a1 == a2,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use stent_journal::{ExecutionId, Timestamp};

    use super::*;

    fn rows(events: &[Event]) -> Vec<JournalRow> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| JournalRow {
                seq: Seq(i as u32),
                kind: e.kind().to_string(),
                bytes: e.encode().expect("encodes"),
                recorded_at: Timestamp(i as i64),
            })
            .collect()
    }

    fn value(v: u64) -> Payload {
        Payload::encode(&v).expect("encodes")
    }

    fn started(function: &str, parent: Option<(InvocationId, u32)>) -> Event {
        Event::Started {
            function: function.into(),
            version: None,
            args: value(0),
            parent: parent.map(|(invocation, seq)| stent_journal::event::ParentLink {
                invocation,
                seq: Seq(seq),
            }),
            forked_from: None,
        }
    }

    fn call(parent: InvocationId, seq: u32, arg: u64) -> Event {
        Event::CallScheduled {
            function: "f".into(),
            version: None,
            call_key: CallKey::new("f", None, &value(arg)),
            args: value(arg),
            child: InvocationId::child_of(parent, Seq(seq)),
        }
    }

    fn done(scheduled: u32, v: u64) -> Event {
        Event::CallCompleted {
            scheduled: Seq(scheduled),
            value: value(v),
        }
    }

    /// Two calls gathered; their answers in `order`; children journaled.
    fn gathered(order: [u32; 2]) -> (InvocationId, Vec<(InvocationId, Vec<JournalRow>)>) {
        let root = ExecutionId::new_random().root_invocation();
        let mut events = vec![started("wf", None), call(root, 1, 1), call(root, 2, 2)];
        for s in order {
            events.push(done(s, u64::from(s) * 10));
        }
        events.push(Event::Completed { value: value(30) });
        let mut groups = vec![(root, rows(&events))];
        for s in [1, 2] {
            let child = InvocationId::child_of(root, Seq(s));
            groups.push((
                child,
                rows(&[
                    started("f", Some((root, s))),
                    Event::Completed {
                        value: value(u64::from(s) * 10),
                    },
                ]),
            ));
        }
        (root, groups)
    }

    #[test]
    fn a_difference_reads_as_decoded_values() {
        let (root, clean) = gathered([1, 2]);
        let mut problems = Vec::new();
        let a = normalize(root, clean, &mut problems);
        let mut b = a.clone();
        if let Some(Step::Call { answer, .. }) = b
            .invocations
            .get_mut(&Vec::new())
            .and_then(|steps| steps.get_mut(1))
        {
            *answer = Some(Ok(Payload::encode(&("late", 7)).expect("encodes")));
        }
        let d = first_difference(&a, &b).expect("a difference");
        assert!(d.contains("clean run call f [key "), "{d}");
        assert!(d.contains("-> ok 10, faulty run call f"), "{d}");
        assert!(d.ends_with(r#"-> ok ["late", 7]"#), "{d}");
    }

    #[test]
    fn answers_arriving_in_another_order_are_the_same_journal() {
        let mut problems = Vec::new();
        let (r1, g1) = gathered([1, 2]);
        let (r2, g2) = gathered([2, 1]);
        let a = normalize(r1, g1, &mut problems);
        let b = normalize(r2, g2, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(a.invocations.len(), 3);
        assert_eq!(first_difference(&a, &b), None);
    }

    #[test]
    fn a_different_answer_is_a_difference() {
        let mut problems = Vec::new();
        let (r1, g1) = gathered([1, 2]);
        let (r2, mut g2) = gathered([1, 2]);
        let root = g2[0].0;
        g2[0].1 = rows(&[
            started("wf", None),
            call(root, 1, 1),
            call(root, 2, 2),
            done(1, 10),
            done(2, 21),
            Event::Completed { value: value(30) },
        ]);
        let a = normalize(r1, g1, &mut problems);
        let b = normalize(r2, g2, &mut problems);
        let d = first_difference(&a, &b).expect("a difference");
        assert!(d.contains("command 2"), "{d}");
    }

    #[test]
    fn an_answer_recorded_twice_or_orphan_journals_are_reported() {
        let mut problems = Vec::new();
        let (root, mut groups) = gathered([1, 2]);
        groups[0].1 = rows(&[
            started("wf", None),
            call(root, 1, 1),
            call(root, 2, 2),
            done(1, 10),
            done(1, 10),
            done(2, 20),
        ]);
        groups.push((
            InvocationId::child_of(root, Seq(9)),
            rows(&[started("f", Some((root, 9)))]),
        ));
        normalize(root, groups, &mut problems);
        assert!(
            problems.iter().any(|p| p.contains("a second time")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("no call schedules it")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_scheduled_call_without_a_child_journal_is_reported() {
        let mut problems = Vec::new();
        let (root, mut groups) = gathered([1, 2]);
        groups.truncate(2);
        normalize(root, groups, &mut problems);
        assert!(
            problems.iter().any(|p| p.contains("has no journal")),
            "{problems:?}"
        );
    }
}
