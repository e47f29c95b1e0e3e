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
    /// The invocation's terminal event.
    End(Event),
    /// An event kind this harness does not know.
    Other(String),
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
                    call_key, child, ..
                } => {
                    let index = steps.len();
                    command_at.insert(row.seq, index);
                    let mut child_path = path.clone();
                    child_path.push(index as u32);
                    queue.push_back((child, child_path));
                    steps.push(Step::Call {
                        call_key,
                        answer: None,
                    });
                }
                Event::CacheHit { call_key, value } => {
                    let mut child_path = path.clone();
                    child_path.push(steps.len() as u32);
                    out.cache_hits.insert(child_path);
                    steps.push(Step::Call {
                        call_key,
                        answer: Some(Ok(value)),
                    });
                }
                Event::CallCompleted { scheduled, value } => {
                    if let Some(index) = answer(scheduled, "CallCompleted", problems) {
                        match &mut steps[index] {
                            Step::Call { answer, .. } => *answer = Some(Ok(value)),
                            other => problems.push(format!(
                                "{at}: CallCompleted answers a {other:?}, not a call"
                            )),
                        }
                    }
                }
                Event::CallFailed { scheduled, failure } => {
                    if let Some(index) = answer(scheduled, "CallFailed", problems) {
                        match &mut steps[index] {
                            Step::Call { answer, .. } => *answer = Some(Err(failure)),
                            other => problems
                                .push(format!("{at}: CallFailed answers a {other:?}, not a call")),
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
                            other => problems
                                .push(format!("{at}: TimerFired answers a {other:?}, not a timer")),
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
                                "{at}: SignalReceived answers a {other:?}, not a signal wait"
                            )),
                        }
                    }
                }
                Event::ContextWrite { write } => steps.push(Step::Write(write)),
                Event::SideEffect { .. } => steps.push(Step::SideEffect),
                e @ (Event::Completed { .. }
                | Event::Failed { .. }
                | Event::Cancelled
                | Event::TimedOut) => {
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
                return Some(format!(
                    "invocation {path:?} ({name}), command {i}: clean run {x:?}, faulty run {y:?}"
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
            }),
            Some(Step::Call {
                call_key: k2,
                answer: a2,
            }),
        ) => k1 == k2 && a1 == a2,
        (a, b) => a == b,
    }
}
