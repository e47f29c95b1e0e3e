//! Re-running recorded journals against today's code, writing nothing.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use stent_journal::export::{InvocationJournal, JournalExport};
use stent_journal::{Event, EventKind, ExecutionId, InvocationId, Seq, Serializer};
use stent_replay::{Driver, DriverError, EffectView, Observer, Status, Verdict};

use crate::debugger::DebugError;
use crate::debugger::diff::{FieldDiff, describe_event, diff_events, reordered_at};
use crate::debugger::export::ExportExt;
use crate::debugger::step::{Step, StepAction, Stepper};
use crate::error::Error;
use crate::executor::Stent;
use crate::registry::FunctionRegistry;

/// How far a replay goes once it finds a divergence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplayMode {
    /// Stop at the first divergence (the default).
    #[default]
    StopAtFirst,
    /// Go on past each divergence, treating the recorded answer as given,
    /// and list every divergence. An invocation stops early only where
    /// going on makes no sense (the code asks for another kind of effect,
    /// or a recorded answer no longer decodes).
    All,
}

/// Why the code and the journal disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DivergenceReason {
    /// The code asked for another durable effect than the journal recorded
    /// (another function, other arguments, another signal, another kind).
    Mismatch,
    /// The code asked for an effect that the journal recorded later, at
    /// `recorded_at`: the calls were reordered (or the one recorded here
    /// is no longer made).
    Reordered {
        /// Where the journal holds what the code asked for.
        recorded_at: Seq,
    },
    /// The code returned another result than the journal recorded.
    Result,
    /// The code could not go on, for example because a recorded value no
    /// longer decodes as the type it expects.
    Aborted(String),
    /// The code waits for something, but the journal recorded more events.
    Stuck,
    /// The journal (with the answers taken as given) is inconsistent.
    Inconsistent(String),
    /// The code deprecated `patch` (its old branch is gone), but this
    /// execution started before the patch and took the old branch.
    PatchRemoved {
        /// The patch's id.
        patch: String,
    },
}

/// One place where today's code and the recorded journal disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The invocation.
    pub invocation: InvocationId,
    /// Its function.
    pub function: String,
    /// Where in its journal.
    pub seq: Seq,
    /// What the journal holds there (`None`: nothing).
    pub recorded: Option<Event>,
    /// What the code asked for there (`None`: nothing, it waits or stopped).
    pub asked: Option<Event>,
    /// Why this is a divergence.
    pub reason: DivergenceReason,
    /// Field by field, what changed (empty when the events cannot be compared).
    pub diffs: Vec<FieldDiff>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = self
            .recorded
            .as_ref()
            .map(|e| describe_event(e, 200))
            .unwrap_or_else(|| "nothing".into());
        let asked = self
            .asked
            .as_ref()
            .map(|e| describe_event(e, 200))
            .unwrap_or_else(|| "nothing".into());
        write!(
            f,
            "invocation {} ({}), seq {}: ",
            self.invocation, self.function, self.seq
        )?;
        match &self.reason {
            DivergenceReason::Mismatch => write!(
                f,
                "the journal recorded {recorded}, but the code asked for {asked}"
            )?,
            DivergenceReason::Reordered { recorded_at } => write!(
                f,
                "calls reordered: the code asked for {asked}, which the journal recorded later, \
                 at seq {recorded_at}; here the journal recorded {recorded} (moved, or no longer \
                 made)"
            )?,
            DivergenceReason::Result => write!(
                f,
                "the journal recorded {recorded}, but the code ended with {asked}"
            )?,
            DivergenceReason::Aborted(message) => write!(
                f,
                "the code stopped before the recorded {recorded}: {message}"
            )?,
            DivergenceReason::Stuck => write!(
                f,
                "the journal recorded {recorded}, but the code waits for something else"
            )?,
            DivergenceReason::Inconsistent(reason) => {
                write!(f, "the journal cannot be followed any further: {reason}")?
            }
            DivergenceReason::PatchRemoved { patch } => write!(
                f,
                "patch {patch:?} was removed too early: this execution took its old branch (the \
                 journal recorded {recorded} where the new branch records the patch's marker)"
            )?,
        }
        for d in &self.diffs {
            write!(f, "\n    {d}")?;
        }
        Ok(())
    }
}

/// How the replay of one invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvocationOutcome {
    /// Same effects, same result.
    Clean,
    /// At least one divergence (see [`ReplayReport::divergences`]).
    Diverged,
    /// The journal ends at `next_seq` without a result (the execution had
    /// not finished) and the code agrees with everything before it.
    CaughtUp {
        /// The seq the code would take next.
        next_seq: Seq,
    },
    /// Not re-run: it performed no durable effect, so replaying it would
    /// only run its body's real side effects again (see
    /// [`Replayer::rerun_leaves`]).
    Skipped,
    /// Not replayed: the replay stopped before it.
    NotReached,
    /// The stepping session quit here.
    Quit,
}

/// The replay of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationReport {
    /// The invocation.
    pub invocation: InvocationId,
    /// Its function.
    pub function: String,
    /// Events in its recorded journal.
    pub recorded_events: usize,
    /// How its replay ended.
    pub outcome: InvocationOutcome,
}

/// What a replay found: clean, or the divergences.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// The execution.
    pub execution: ExecutionId,
    /// Its root function.
    pub function: String,
    /// The mode used.
    pub mode: ReplayMode,
    /// Every invocation, in the export's order (the root first).
    pub invocations: Vec<InvocationReport>,
    /// Every divergence found, in the order found.
    pub divergences: Vec<Divergence>,
    /// True if a stepping session quit before the end.
    pub quit: bool,
}

impl ReplayReport {
    /// True if the code reproduced every recorded effect and result.
    pub fn is_clean(&self) -> bool {
        self.divergences.is_empty() && !self.quit
    }

    /// The first divergence, if any.
    pub fn first_divergence(&self) -> Option<&Divergence> {
        self.divergences.first()
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |o: fn(&InvocationOutcome) -> bool| {
            self.invocations.iter().filter(|i| o(&i.outcome)).count()
        };
        let replayed = count(|o| {
            matches!(
                o,
                InvocationOutcome::Clean
                    | InvocationOutcome::Diverged
                    | InvocationOutcome::CaughtUp { .. }
            )
        });
        let skipped = count(|o| matches!(o, InvocationOutcome::Skipped));
        let not_reached = count(|o| matches!(o, InvocationOutcome::NotReached));
        write!(
            f,
            "execution {} ({}): {replayed} invocation(s) replayed, {skipped} without durable effects not re-run",
            self.execution, self.function
        )?;
        if not_reached > 0 {
            write!(f, ", {not_reached} not reached")?;
        }
        if self.quit {
            write!(f, "; the stepping session quit before the end")?;
        }
        if self.divergences.is_empty() {
            if !self.quit {
                write!(f, "; replays cleanly")?;
            }
            if let Some(i) = self.invocations.iter().find_map(|i| match i.outcome {
                InvocationOutcome::CaughtUp { next_seq } => Some((i, next_seq)),
                _ => None,
            }) {
                write!(
                    f,
                    " (invocation {} had not finished: its journal ends at seq {})",
                    i.0.invocation, i.1
                )?;
            }
            return Ok(());
        }
        write!(f, "; {} divergence(s):", self.divergences.len())?;
        for (n, d) in self.divergences.iter().enumerate() {
            write!(f, "\n  {}. {d}", n + 1)?;
        }
        Ok(())
    }
}

/// Replays recorded journals against the code of a [`FunctionRegistry`],
/// writing nothing anywhere.
///
/// Every invocation of the execution (the root and every nested call) is
/// replayed against its own journal, through the same replay driver the
/// engine uses: each durable effect the code performs is compared with the
/// recorded event at its seq, recorded answers are given back to the code,
/// and the final result is compared with the recorded one.
///
/// Invocations that performed no durable effect (leaf steps that talk to the
/// outside world) are not re-run by default: their result is already in
/// their caller's journal, and running them again would repeat their side
/// effects. [`Replayer::rerun_leaves`] includes them.
///
/// ```no_run
/// use stent::debugger::{ExportExt, JournalExport, ReplayMode, Replayer};
///
/// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::debugger::DebugError> {
/// let export = JournalExport::read_from("order-7.stent")?;
/// let report = Replayer::new(stent::FunctionRegistry::global())
///     .mode(ReplayMode::All)
///     .replay(&export)
///     .await?;
/// if !report.is_clean() {
///     eprintln!("{report}");
/// }
/// // Or straight from the database the executor uses:
/// let report = Replayer::for_stent(&executor).replay_stored(&executor, id).await?;
/// # let _ = report;
/// # Ok(()) }
/// ```
pub struct Replayer {
    registry: Arc<FunctionRegistry>,
    mode: ReplayMode,
    rerun_leaves: bool,
    stepper: Option<Arc<Mutex<dyn Stepper>>>,
    breakpoints: Vec<Seq>,
    io_timeout: Duration,
    serializer: Serializer,
}

impl fmt::Debug for Replayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replayer")
            .field("mode", &self.mode)
            .field("rerun_leaves", &self.rerun_leaves)
            .field("stepping", &self.stepper.is_some())
            .field("breakpoints", &self.breakpoints)
            .field("serializer", &self.serializer)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer running the functions of `registry`.
    pub fn new(registry: impl Into<Arc<FunctionRegistry>>) -> Replayer {
        Replayer {
            registry: registry.into(),
            mode: ReplayMode::StopAtFirst,
            rerun_leaves: false,
            stepper: None,
            breakpoints: Vec::new(),
            io_timeout: Duration::from_secs(30),
            serializer: Serializer::default(),
        }
    }

    /// A replayer running the functions registered with `stent`, encoding
    /// values with its serializer.
    pub fn for_stent(stent: &Stent) -> Replayer {
        Replayer::new(stent.registry().clone()).serializer(stent.inner.serializer)
    }

    /// The serializer the recorded execution's values were encoded with
    /// (the executor's, see `StentBuilder::serializer`; CBOR by default).
    /// Call keys hash the encoded arguments, so replaying a JSON-encoded
    /// journal with CBOR reports every call as changed.
    pub fn serializer(mut self, serializer: Serializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// Stop at the first divergence, or list them all.
    pub fn mode(mut self, mode: ReplayMode) -> Self {
        self.mode = mode;
        self
    }

    /// Also re-run invocations that performed no durable effect (their
    /// bodies run for real: only for code without outside side effects).
    pub fn rerun_leaves(mut self, yes: bool) -> Self {
        self.rerun_leaves = yes;
        self
    }

    /// Shows effects to `stepper` before the driver matches them: every
    /// effect from the start (unless breakpoints are set, then from the first
    /// breakpoint), and every divergence. Keep a clone of the `Arc` to get
    /// the stepper back after the replay.
    pub fn stepper<S: Stepper + 'static>(mut self, stepper: Arc<Mutex<S>>) -> Self {
        self.stepper = Some(stepper);
        self
    }

    /// Stops in the stepper at `seq` (of any invocation) even while continuing.
    pub fn break_at(mut self, seq: Seq) -> Self {
        self.breakpoints.push(seq);
        self
    }

    /// How long code may wait on something that is not a durable effect (a
    /// real network call inside a workflow body) before the replay reports
    /// it as stuck (default 30 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Loads execution `id` from `stent`'s backend and replays it.
    pub async fn replay_stored(
        &self,
        stent: &Stent,
        id: ExecutionId,
    ) -> Result<ReplayReport, DebugError> {
        let export = JournalExport::from_stent(stent, id).await?;
        self.replay(&export).await
    }

    /// Replays every invocation of the export.
    pub async fn replay(&self, export: &JournalExport) -> Result<ReplayReport, DebugError> {
        let session = Arc::new(Mutex::new(Session {
            stepping: self.stepper.is_some() && self.breakpoints.is_empty(),
            quit: false,
        }));
        let mut report = ReplayReport {
            execution: export.execution,
            function: export.function.clone(),
            mode: self.mode,
            invocations: Vec::new(),
            divergences: Vec::new(),
            quit: false,
        };
        let mut stop = false;
        for inv in &export.invocations {
            let events = inv.events()?;
            let function = match events.first() {
                Some(Event::Started { function, .. }) => function.clone(),
                _ => {
                    return Err(stent_journal::export::ExportError::Corrupt(format!(
                        "the journal of invocation {} does not start with a started event",
                        inv.invocation
                    ))
                    .into());
                }
            };
            if stop {
                report.invocations.push(InvocationReport {
                    invocation: inv.invocation,
                    function,
                    recorded_events: events.len(),
                    outcome: InvocationOutcome::NotReached,
                });
                continue;
            }
            let (outcome, divergences) = self
                .replay_invocation(inv, function.clone(), events.clone(), &session)
                .await?;
            report.invocations.push(InvocationReport {
                invocation: inv.invocation,
                function,
                recorded_events: events.len(),
                outcome,
            });
            report.divergences.extend(divergences);
            let quit = lock(&session).quit;
            if quit {
                report.quit = true;
                stop = true;
            }
            if self.mode == ReplayMode::StopAtFirst && !report.divergences.is_empty() {
                stop = true;
            }
        }
        Ok(report)
    }

    async fn replay_invocation(
        &self,
        inv: &InvocationJournal,
        function: String,
        mut events: Vec<Event>,
        session: &Arc<Mutex<Session>>,
    ) -> Result<(InvocationOutcome, Vec<Divergence>), DebugError> {
        // A cancellation or timeout closing the root journal is not
        // something the code did: replay up to it, as up to the end of an
        // execution that still runs.
        if events
            .last()
            .is_some_and(|e| matches!(e, Event::Cancelled { .. } | Event::TimedOut { .. }))
        {
            events.pop();
        }
        let leaf = events
            .iter()
            .all(|e| e.kind() == EventKind::Started || e.kind().is_terminal());
        if leaf && !self.rerun_leaves {
            return Ok((InvocationOutcome::Skipped, Vec::new()));
        }
        let Some(Event::Started { version, args, .. }) = events.first().cloned() else {
            return Ok((InvocationOutcome::Skipped, Vec::new()));
        };
        let entry = self.registry.get(&function)?;
        let mut driver = Driver::new(inv.invocation, events.clone(), entry.invoke(args.clone()))
            .map_err(|e| {
                DebugError::Engine(Error::Backend(stent_journal::store::StoreError::Corrupt(
                    e.to_string(),
                )))
            })?;
        if let Some(key_of) = entry.idempotency_key
            && let Ok(key) = key_of(&function, version.as_deref(), &args)
        {
            driver.set_idempotency_key(key);
        }
        if let Some(first) = inv.rows.first() {
            driver.set_now(first.recorded_at);
        }
        driver.set_serializer(self.serializer);
        let watch = Arc::new(Mutex::new(Watch {
            invocation: inv.invocation,
            function: function.clone(),
            recorded: events,
            mode: self.mode,
            divergences: Vec::new(),
            stopped: None,
            stepper: self.stepper.clone(),
            breakpoints: self.breakpoints.clone(),
            session: session.clone(),
        }));
        driver.set_observer(WatchHandle(watch.clone()));
        let status = self.run(&mut driver).await;
        let mut w = lock(&watch);
        let next_seq = driver.next_seq();
        let outcome = match status {
            Status::Stopped(DriverError::Aborted { .. }) if w.stopped.is_some() => {
                match w.stopped {
                    Some(Stop::Quit) => InvocationOutcome::Quit,
                    Some(Stop::CaughtUp(seq)) if w.divergences.is_empty() => {
                        InvocationOutcome::CaughtUp { next_seq: seq }
                    }
                    _ => InvocationOutcome::Diverged,
                }
            }
            Status::Finished(_) if w.divergences.is_empty() => InvocationOutcome::Clean,
            Status::Finished(_) => InvocationOutcome::Diverged,
            Status::Blocked if w.divergences.is_empty() => InvocationOutcome::CaughtUp { next_seq },
            Status::Blocked => InvocationOutcome::Diverged,
            Status::Behind => {
                let d = driver.divergence_if_behind();
                let diverged = w.divergence(d.seq, d.recorded, None, DivergenceReason::Stuck);
                w.divergences.push(diverged);
                InvocationOutcome::Diverged
            }
            Status::Stopped(DriverError::Aborted { message, .. }) => {
                let recorded = w.recorded.get(next_seq.0 as usize).cloned();
                let d = w.divergence(next_seq, recorded, None, DivergenceReason::Aborted(message));
                w.divergences.push(d);
                InvocationOutcome::Diverged
            }
            Status::Stopped(DriverError::Diverged(d)) => {
                let reason = match &d.asked {
                    Some(asked) => reason_for(&w.recorded, d.seq, asked),
                    None => DivergenceReason::Mismatch,
                };
                let d = w.divergence(d.seq, d.recorded, d.asked, reason);
                w.divergences.push(d);
                InvocationOutcome::Diverged
            }
            Status::Stopped(DriverError::Corrupt { seq, reason, .. }) => {
                let recorded = w.recorded.get(seq.0 as usize).cloned();
                let d = w.divergence(seq, recorded, None, DivergenceReason::Inconsistent(reason));
                w.divergences.push(d);
                InvocationOutcome::Diverged
            }
            Status::Stopped(other) => {
                let d = w.divergence(
                    next_seq,
                    None,
                    None,
                    DivergenceReason::Inconsistent(other.to_string()),
                );
                w.divergences.push(d);
                InvocationOutcome::Diverged
            }
        };
        Ok((outcome, std::mem::take(&mut w.divergences)))
    }

    /// Advances the driver until it finishes, stops, or waits; waits for
    /// real I/O (a [`Status::Behind`]) up to the I/O timeout.
    async fn run(&self, driver: &mut Driver) -> Status {
        let polled = std::future::poll_fn(|cx| match driver.advance(cx) {
            Status::Behind => Poll::Pending,
            other => Poll::Ready(other),
        });
        match tokio::time::timeout(self.io_timeout, polled).await {
            Ok(status) => status,
            Err(_) => Status::Behind,
        }
    }
}

/// Replays the export against `registry`, stopping at the first divergence.
///
/// ```no_run
/// # async fn demo(export: stent::journal::export::JournalExport) -> Result<(), stent::debugger::DebugError> {
/// let report = stent::debugger::replay(stent::FunctionRegistry::global(), &export).await?;
/// assert!(report.is_clean(), "{report}");
/// # Ok(()) }
/// ```
pub async fn replay(
    registry: impl Into<Arc<FunctionRegistry>>,
    export: &JournalExport,
) -> Result<ReplayReport, DebugError> {
    Replayer::new(registry).replay(export).await
}

/// Shared by the invocations of one replay.
struct Session {
    /// Show every effect to the stepper (else only breakpoints and divergences).
    stepping: bool,
    /// The stepper asked to quit.
    quit: bool,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Quit,
    Diverged,
    CaughtUp(Seq),
}

/// What the observer of one invocation knows and found.
struct Watch {
    invocation: InvocationId,
    function: String,
    recorded: Vec<Event>,
    mode: ReplayMode,
    divergences: Vec<Divergence>,
    stopped: Option<Stop>,
    stepper: Option<Arc<Mutex<dyn Stepper>>>,
    breakpoints: Vec<Seq>,
    session: Arc<Mutex<Session>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watch {
    fn divergence(
        &self,
        seq: Seq,
        recorded: Option<Event>,
        asked: Option<Event>,
        reason: DivergenceReason,
    ) -> Divergence {
        let diffs = diffs_for(recorded.as_ref(), asked.as_ref(), &reason);
        Divergence {
            invocation: self.invocation,
            function: self.function.clone(),
            seq,
            recorded,
            asked,
            reason,
            diffs,
        }
    }

    /// The recorded answer to the effect at `seq`: its resolution, or the
    /// event itself for effects answered at once.
    fn answer(&self, seq: Seq) -> Option<&Event> {
        match self.recorded.get(seq.0 as usize) {
            Some(e @ (Event::CacheHit { .. } | Event::SideEffect { .. })) => Some(e),
            _ => self
                .recorded
                .iter()
                .skip(seq.0 as usize + 1)
                .find(|e| e.resolves() == Some(seq)),
        }
    }

    fn observe(&mut self, view: EffectView<'_>) -> Verdict {
        let matches = view.recorded.map(|r| effect_matches(view.asked, r));
        let diverges = matches == Some(false);
        if let (Some(recorded), true) = (view.recorded, diverges) {
            // Recorded before the stepper sees it, so a quit keeps it.
            let reason = reason_for(&self.recorded, view.seq, view.asked);
            let d = self.divergence(
                view.seq,
                Some(recorded.clone()),
                Some(view.asked.clone()),
                reason,
            );
            self.divergences.push(d);
        }
        if let Some(stepper) = self.stepper.clone() {
            let show =
                lock(&self.session).stepping || self.breakpoints.contains(&view.seq) || diverges;
            if show {
                let no_diffs = Vec::new();
                let diffs = match (diverges, self.divergences.last()) {
                    (true, Some(d)) => &d.diffs,
                    _ => &no_diffs,
                };
                let step = Step {
                    invocation: self.invocation,
                    function: &self.function,
                    seq: view.seq,
                    asked: view.asked,
                    recorded: view.recorded,
                    answer: self.answer(view.seq),
                    diffs,
                    matches: matches == Some(true),
                };
                let action = lock(&*stepper).before_effect(&step);
                let mut session = lock(&self.session);
                match action {
                    StepAction::Step => session.stepping = true,
                    StepAction::Continue => session.stepping = false,
                    StepAction::Quit => {
                        session.quit = true;
                        self.stopped = Some(Stop::Quit);
                        return Verdict::Stop("the stepping session quit".into());
                    }
                }
            }
        }
        let Some(recorded) = view.recorded else {
            // The journal ends here: the execution had not gone further.
            self.stopped = Some(Stop::CaughtUp(view.seq));
            return Verdict::Stop("the recorded journal ends here".into());
        };
        if !diverges {
            return Verdict::Proceed;
        }
        if self.mode == ReplayMode::All
            && let Some(event) = take_as_given(recorded, view.asked)
        {
            return Verdict::Replace(event);
        }
        self.stopped = Some(Stop::Diverged);
        Verdict::Stop("diverged".into())
    }
}

struct WatchHandle(Arc<Mutex<Watch>>);

impl Observer for WatchHandle {
    fn observe(&mut self, view: EffectView<'_>) -> Verdict {
        lock(&self.0).observe(view)
    }
}

/// Why what the code `asked` at `seq` is not the event `journal` holds
/// there: a reorder when the journal holds it later, another result when
/// the code ended, a mismatch otherwise.
pub(crate) fn reason_for(journal: &[Event], seq: Seq, asked: &Event) -> DivergenceReason {
    if let Event::PatchMarker { patch } = asked {
        // The driver asks for a marker only where a deprecated patch finds
        // the journal on the old branch.
        DivergenceReason::PatchRemoved {
            patch: patch.clone(),
        }
    } else if let Some(recorded_at) = reordered_at(journal, seq, asked) {
        DivergenceReason::Reordered { recorded_at }
    } else if asked.kind().is_terminal() {
        DivergenceReason::Result
    } else {
        DivergenceReason::Mismatch
    }
}

/// The field diffs that show a divergence: none for a reorder, where a
/// diff between two different calls would say nothing.
pub(crate) fn diffs_for(
    recorded: Option<&Event>,
    asked: Option<&Event>,
    reason: &DivergenceReason,
) -> Vec<FieldDiff> {
    match (recorded, asked, reason) {
        (_, _, DivergenceReason::Reordered { .. } | DivergenceReason::PatchRemoved { .. }) => {
            Vec::new()
        }
        (Some(r), Some(a), _) => diff_events(r, a),
        _ => Vec::new(),
    }
}

/// Whether the recorded event answers what the code asked (the driver's rule).
fn effect_matches(asked: &Event, recorded: &Event) -> bool {
    stent_replay::recorded_answers(asked, recorded)
}

/// The event to put in the journal's place so that the code goes on with
/// the recorded answer, when that makes sense.
fn take_as_given(recorded: &Event, asked: &Event) -> Option<Event> {
    match (recorded, asked) {
        (Event::CallScheduled { .. }, Event::CallScheduled { .. })
        | (Event::SignalAwaited { .. }, Event::SignalAwaited { .. })
        | (Event::ContextWrite { .. }, Event::ContextWrite { .. }) => Some(asked.clone()),
        (
            Event::CacheHit { value, .. },
            Event::CallScheduled {
                call_key,
                function,
                version,
                ..
            },
        ) => Some(Event::CacheHit {
            call_key: *call_key,
            function: Some(function.clone()),
            version: version.clone(),
            value: value.clone(),
        }),
        (r, a) if r.kind().is_terminal() && a.kind().is_terminal() => Some(asked.clone()),
        _ => None,
    }
}
