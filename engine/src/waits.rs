//! What a running execution is waiting for, derived from its journals and
//! its tasks: pending timers, signal waits, calls and the state of the task
//! that runs each, a pause.
//!
//! An effect the code created and that has no answer in the journal is a
//! wait, in every invocation that has not ended. A `wait_for_signal_timeout`
//! (a signal wait followed by its timer) is one wait, over once either
//! answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use stent_journal::event::Event;
use stent_journal::store::{TaskRecord, TaskState, WorkerRecord};
use stent_journal::{InvocationId, Seq, Timestamp};

use crate::context::FoldRow;

/// One thing an execution is waiting for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Wait {
    /// The invocation that waits (the root, or a call inside it).
    pub invocation: InvocationId,
    /// The seq of the effect waited for in that invocation's journal.
    pub seq: Seq,
    /// When the wait began (the effect was journaled).
    pub since: DateTime<Utc>,
    /// What it waits for.
    pub what: Waiting,
}

/// What a [`Wait`] waits for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Waiting {
    /// A durable timer (`Stent::sleep`).
    Timer {
        /// When it fires.
        due: DateTime<Utc>,
    },
    /// A signal (`Stent::wait_for_signal`, or `wait_for_signal_timeout`).
    Signal {
        /// Its name.
        name: String,
        /// When the wait gives up, for a wait with a timeout.
        timeout: Option<DateTime<Utc>>,
    },
    /// A call of another durable function, and where its task stands.
    Call {
        /// The function called.
        function: String,
        /// The invocation that runs it.
        child: InvocationId,
        /// Its task.
        task: CallTask,
    },
    /// A worker to claim the execution (dispatched, not yet started, or
    /// parked and due again).
    Claim {
        /// Since when it could be claimed (or when it may be).
        since: DateTime<Utc>,
        /// True if a live worker serves its function and queue; false if
        /// none does (it waits until one starts).
        served: bool,
    },
}

/// Where the task of a called function stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallTask {
    /// Runnable, waiting for a worker to claim it.
    Ready {
        /// Since when.
        since: DateTime<Utc>,
    },
    /// Runnable, but no live worker serves its function and queue: it
    /// waits until one starts.
    Unserved {
        /// Since when it is runnable.
        since: DateTime<Utc>,
    },
    /// Runnable from this time on (a delay).
    Scheduled {
        /// When.
        at: DateTime<Utc>,
    },
    /// A failed attempt will be retried.
    Retrying {
        /// The attempt that comes next (from 2).
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
        /// What the last attempt failed with, when the store kept it.
        last_error: Option<String>,
    },
    /// A worker runs it under a lease.
    Running {
        /// The worker.
        worker: String,
        /// When its lease runs out unless renewed.
        lease_until: DateTime<Utc>,
    },
    /// It waits itself (its own waits are listed too).
    Waiting,
    /// It finished; its result is on its way to the caller.
    Delivering,
    /// Dead-lettered: suspended until a person replays or discards it.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Stopped by a non-determinism report.
    Paused,
    /// Its task is not there (yet), or was cancelled.
    Unknown,
}

impl Waiting {
    /// A short name of the kind of wait: `timer`, `signal`, `call`, `claim`.
    pub fn kind(&self) -> &'static str {
        match self {
            Waiting::Timer { .. } => "timer",
            Waiting::Signal { .. } => "signal",
            Waiting::Call { .. } => "call",
            Waiting::Claim { .. } => "claim",
        }
    }
}

impl CallTask {
    /// A short name of the task's state: `ready`, `unserved`, `scheduled`, `retrying`,
    /// `running`, `waiting`, `delivering`, `dead_lettered`, `paused`,
    /// `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallTask::Ready { .. } => "ready",
            CallTask::Unserved { .. } => "unserved",
            CallTask::Scheduled { .. } => "scheduled",
            CallTask::Retrying { .. } => "retrying",
            CallTask::Running { .. } => "running",
            CallTask::Waiting => "waiting",
            CallTask::Delivering => "delivering",
            CallTask::DeadLettered { .. } => "dead_lettered",
            CallTask::Paused => "paused",
            CallTask::Unknown => "unknown",
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Timer { due } => write!(f, "timer due {}", time(*due)),
            Waiting::Signal {
                name,
                timeout: None,
            } => write!(f, "signal {name:?}"),
            Waiting::Signal {
                name,
                timeout: Some(t),
            } => write!(f, "signal {name:?} (gives up at {})", time(*t)),
            Waiting::Call { function, task, .. } => write!(f, "call {function}: {task}"),
            Waiting::Claim {
                since,
                served: true,
            } => write!(f, "a worker to claim it (runnable since {})", time(*since)),
            Waiting::Claim {
                since,
                served: false,
            } => write!(
                f,
                "a worker to claim it: no live worker serves it (runnable since {})",
                time(*since)
            ),
        }
    }
}

impl fmt::Display for CallTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallTask::Ready { since } => {
                write!(
                    f,
                    "ready since {}, not claimed by a worker yet",
                    time(*since)
                )
            }
            CallTask::Unserved { since } => write!(
                f,
                "no live worker serves it (runnable since {})",
                time(*since)
            ),
            CallTask::Scheduled { at } => write!(f, "scheduled for {}", time(*at)),
            CallTask::Retrying {
                attempt,
                at,
                last_error,
            } => {
                write!(f, "retrying: attempt {attempt} at {}", time(*at))?;
                match last_error {
                    Some(error) => write!(f, " (last attempt: {error})"),
                    None => Ok(()),
                }
            }
            CallTask::Running {
                worker,
                lease_until,
            } => write!(
                f,
                "running on worker {worker} (lease until {})",
                time(*lease_until)
            ),
            CallTask::Waiting => f.write_str("waiting (see its own waits)"),
            CallTask::Delivering => f.write_str("finished, its result on its way"),
            CallTask::DeadLettered { reason } => write!(f, "dead-lettered: {reason}"),
            CallTask::Paused => f.write_str("paused"),
            CallTask::Unknown => f.write_str("its task is not there"),
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.what.fmt(f)
    }
}

/// An effect journaled and not answered.
struct Pending<'a> {
    row: &'a FoldRow,
}

/// The waits of an execution: from the rows of its journals (every kind of
/// effect and its answers, and terminal events), its tasks, the reasons of
/// its dead letters (by task), and the time `now`.
pub(crate) fn waits(
    rows: &[FoldRow],
    tasks: &[TaskRecord],
    dead: &HashMap<InvocationId, String>,
    workers: &[WorkerRecord],
    now: Timestamp,
) -> Vec<Wait> {
    let mut by_invocation: BTreeMap<InvocationId, Vec<&FoldRow>> = BTreeMap::new();
    for row in rows {
        by_invocation.entry(row.invocation).or_default().push(row);
    }
    let tasks: HashMap<InvocationId, &TaskRecord> =
        tasks.iter().map(|t| (t.invocation, t)).collect();
    let mut out = Vec::new();
    for (invocation, mut journal) in by_invocation {
        journal.sort_by_key(|r| r.seq);
        if journal.iter().any(|r| r.event.kind().is_terminal()) {
            continue;
        }
        if tasks
            .get(&invocation)
            .is_some_and(|t| matches!(t.state, TaskState::Done | TaskState::Cancelled))
        {
            continue;
        }
        let answered: HashSet<Seq> = journal.iter().filter_map(|r| r.event.resolves()).collect();
        let pending: Vec<Pending<'_>> = journal
            .iter()
            .filter(|r| is_effect(&r.event) && !answered.contains(&r.seq))
            .map(|row| Pending { row })
            .collect();
        // A signal wait followed by its timer (`wait_for_signal_timeout`):
        // over once either answered; one wait while neither is.
        let paired = |seq: Seq| -> bool {
            journal
                .iter()
                .any(|r| r.seq == Seq(seq.0 + 1) && matches!(r.event, Event::TimerStarted { .. }))
        };
        let mut skip = HashSet::new();
        for p in &pending {
            if let Event::SignalAwaited { .. } = p.row.event
                && paired(p.row.seq)
            {
                let timer = Seq(p.row.seq.0 + 1);
                if !answered.contains(&timer) {
                    // Both pending: the timer is the signal wait's timeout.
                    skip.insert(timer);
                }
            }
        }
        for p in pending {
            let row = p.row;
            if skip.contains(&row.seq) {
                continue;
            }
            // A timer whose signal wait was answered, or a signal wait whose
            // timer fired: no longer waited for.
            if let Event::TimerStarted { .. } = row.event
                && row.seq.0 > 0
                && journal.iter().any(|r| {
                    r.seq == Seq(row.seq.0 - 1) && matches!(r.event, Event::SignalAwaited { .. })
                })
                && answered.contains(&Seq(row.seq.0 - 1))
            {
                continue;
            }
            if let Event::SignalAwaited { .. } = row.event
                && paired(row.seq)
                && answered.contains(&Seq(row.seq.0 + 1))
            {
                continue;
            }
            let what = match &row.event {
                Event::TimerStarted { fire_at, .. } => Waiting::Timer {
                    due: fire_at.to_datetime(),
                },
                Event::SignalAwaited { name } => Waiting::Signal {
                    name: name.clone(),
                    timeout: journal.iter().find_map(|r| match &r.event {
                        Event::TimerStarted { fire_at, .. }
                            if r.seq == Seq(row.seq.0 + 1) && paired(row.seq) =>
                        {
                            Some(fire_at.to_datetime())
                        }
                        _ => None,
                    }),
                },
                Event::CallScheduled {
                    function, child, ..
                } => Waiting::Call {
                    function: function.clone(),
                    child: *child,
                    task: call_task(tasks.get(child).copied(), dead.get(child), workers, now),
                },
                _ => continue,
            };
            out.push(Wait {
                invocation,
                seq: row.seq,
                since: row.recorded_at.to_datetime(),
                what,
            });
        }
    }
    out
}

/// A claim wait of the root: its task is runnable and no worker holds it
/// (or it waits for nothing else: a dispatch with a delay).
pub(crate) fn claim_wait(
    root: &TaskRecord,
    workers: &[WorkerRecord],
    now: Timestamp,
    other_waits: bool,
) -> Option<Wait> {
    (root.state == TaskState::Ready && (root.run_at <= now || !other_waits)).then(|| Wait {
        invocation: root.invocation,
        seq: Seq(0),
        since: root.run_at.to_datetime(),
        what: Waiting::Claim {
            since: root.run_at.to_datetime(),
            served: served(root, workers, now),
        },
    })
}

/// True if a live worker would claim `task`.
fn served(task: &TaskRecord, workers: &[WorkerRecord], now: Timestamp) -> bool {
    workers
        .iter()
        .any(|w| w.serves(&task.function, &task.routing, now))
}

/// True for the events that create something to wait for.
fn is_effect(event: &Event) -> bool {
    matches!(
        event,
        Event::TimerStarted { .. } | Event::SignalAwaited { .. } | Event::CallScheduled { .. }
    )
}

fn call_task(
    task: Option<&TaskRecord>,
    dead: Option<&String>,
    workers: &[WorkerRecord],
    now: Timestamp,
) -> CallTask {
    let Some(t) = task else {
        return CallTask::Unknown;
    };
    match t.state {
        TaskState::Ready if t.run_at > now && t.retries > 0 => CallTask::Retrying {
            attempt: t.retries + 1,
            at: t.run_at.to_datetime(),
            last_error: t.last_failure.as_ref().map(|(_, error)| error.clone()),
        },
        TaskState::Ready if t.run_at > now => CallTask::Scheduled {
            at: t.run_at.to_datetime(),
        },
        TaskState::Ready if !served(t, workers, now) => CallTask::Unserved {
            since: t.run_at.to_datetime(),
        },
        TaskState::Ready => CallTask::Ready {
            since: t.run_at.to_datetime(),
        },
        TaskState::Leased => CallTask::Running {
            worker: t
                .lease_owner
                .as_ref()
                .map_or_else(String::new, |w| w.to_string()),
            lease_until: t.lease_until.unwrap_or(now).to_datetime(),
        },
        TaskState::Waiting => CallTask::Waiting,
        TaskState::Done => CallTask::Delivering,
        TaskState::Dead => CallTask::DeadLettered {
            reason: dead.cloned().unwrap_or_default(),
        },
        TaskState::Paused => CallTask::Paused,
        _ => CallTask::Unknown,
    }
}
