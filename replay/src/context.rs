//! The running invocation's side of replay: the state shared between a
//! [`crate::Driver`] and the effects its code creates, and the thread-local
//! through which code finds it without a context argument.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use stent_journal::event::ContextWrite;
use stent_journal::{
    CallKey, Event, Failure, InvocationId, Payload, PayloadLimits, Seq, Serializer, Timestamp,
};

use crate::driver::{Divergence, DriverError};

thread_local! {
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Returned when a durable effect is used outside a running invocation.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no durable execution is running on this task: durable effects work only inside a durable function run by a stent worker (not in a tokio::spawn'ed task; pass values back to the workflow instead)"
)]
pub struct NoContext;

/// A durable effect the code asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Call another durable function.
    Call {
        /// Callee name.
        function: String,
        /// Callee version.
        version: Option<String>,
        /// Call key.
        call_key: CallKey,
        /// Canonical arguments.
        args: Payload,
    },
    /// Sleep durably.
    Timer {
        /// How long.
        duration: Duration,
    },
    /// Wait for a signal.
    Signal {
        /// Its name.
        name: String,
    },
    /// Record a value read once (the value is used only on the first run).
    SideEffect {
        /// The freshly read value.
        value: Payload,
    },
    /// Write to the execution context.
    ContextWrite(ContextWrite),
}

impl Command {
    /// A call command, computing the call key.
    pub fn call(function: &str, version: Option<&str>, args: Payload) -> Command {
        Command::Call {
            call_key: CallKey::new(function, version, &args),
            function: function.to_string(),
            version: version.map(str::to_string),
            args,
        }
    }

    /// The event this command becomes when it is new.
    fn to_event(&self, invocation: InvocationId, seq: Seq, now: Timestamp) -> Event {
        match self.clone() {
            Command::Call {
                function,
                version,
                call_key,
                args,
            } => Event::CallScheduled {
                function,
                version,
                call_key,
                args,
                child: InvocationId::child_of(invocation, seq),
            },
            Command::Timer { duration } => Event::TimerStarted {
                fire_at: now.saturating_add(duration),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            },
            Command::Signal { name } => Event::SignalAwaited { name },
            Command::SideEffect { value } => Event::SideEffect { value },
            Command::ContextWrite(write) => Event::ContextWrite { write },
        }
    }

    /// Whether a recorded event answers this command on replay.
    fn matches(&self, recorded: &Event) -> bool {
        match (self, recorded) {
            (
                Command::Call {
                    function,
                    call_key,
                    args,
                    ..
                },
                recorded,
            ) => call_matches(function, call_key, args, recorded),
            (Command::Timer { .. }, Event::TimerStarted { .. }) => true,
            (Command::Signal { name }, Event::SignalAwaited { name: n }) => name == n,
            (Command::SideEffect { .. }, Event::SideEffect { .. }) => true,
            (Command::ContextWrite(a), Event::ContextWrite { write: b }) => a == b,
            _ => false,
        }
    }
}

/// Whether `recorded` answers a call of `function` with `args` (whose call
/// key under today's version is `call_key`).
///
/// A recorded call is history: its result came from the version of the
/// callee that ran then. So a call recorded under another version of the
/// same function, with the same arguments, still matches; only new calls
/// (and the cache and idempotency keys they look up) use today's version.
fn call_matches(function: &str, call_key: &CallKey, args: &Payload, recorded: &Event) -> bool {
    match recorded {
        Event::CallScheduled {
            function: f,
            call_key: k,
            args: a,
            ..
        } => function == f && (call_key == k || args == a),
        Event::CacheHit {
            call_key: k,
            function: f,
            version,
            ..
        } => {
            call_key == k
                || (f.as_deref() == Some(function)
                    && CallKey::new(function, version.as_deref(), args) == *k)
        }
        _ => false,
    }
}

/// Whether the recorded event answers the event the code asked for — the
/// rule replay matches a journal by, for tools (debuggers) that compare
/// events rather than run code. Terminal events match when equal.
pub fn recorded_answers(asked: &Event, recorded: &Event) -> bool {
    match (asked, recorded) {
        (
            Event::CallScheduled {
                function,
                call_key,
                args,
                ..
            },
            recorded,
        ) => call_matches(function, call_key, args, recorded),
        (Event::TimerStarted { .. }, Event::TimerStarted { .. })
        | (Event::SideEffect { .. }, Event::SideEffect { .. }) => true,
        (Event::SignalAwaited { name }, Event::SignalAwaited { name: n }) => name == n,
        (Event::ContextWrite { write: a }, Event::ContextWrite { write: b }) => a == b,
        (Event::PatchMarker { patch: a }, Event::PatchMarker { patch: b }) => a == b,
        (a, b) if a.kind().is_terminal() => a == b,
        _ => false,
    }
}

/// The answer to an effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// A value: a call's `Ok`, a signal's payload, a side effect's value.
    Value(Payload),
    /// A call failed for good.
    Failed(Failure),
    /// A timer fired; a context write was recorded.
    Done,
}

impl Resolution {
    /// The value, if this is one.
    pub fn into_value(self) -> Option<Payload> {
        match self {
            Resolution::Value(p) => Some(p),
            _ => None,
        }
    }
}

/// An effect the code is still waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outstanding {
    /// A child call.
    Call {
        /// The child invocation.
        child: InvocationId,
    },
    /// A timer.
    Timer {
        /// When it fires.
        fire_at: Timestamp,
    },
    /// A signal wait.
    Signal {
        /// The signal name.
        name: String,
    },
}

pub(crate) struct State {
    pub(crate) invocation: InvocationId,
    /// The whole journal: recorded events followed by the ones appended by this driver.
    pub(crate) history: Vec<Event>,
    /// Events `history[recorded_len..]` were appended here and not yet taken.
    pub(crate) taken_len: usize,
    pub(crate) next_seq: u32,
    pub(crate) now: Timestamp,
    pub(crate) resolved: HashMap<Seq, Resolution>,
    pub(crate) outstanding: BTreeMap<Seq, Outstanding>,
    pub(crate) wakers: HashMap<Seq, Waker>,
    pub(crate) fatal: Option<DriverError>,
    /// The idempotency key the engine took for this invocation, if any.
    pub(crate) idempotency_key: Option<String>,
    /// How the engine encodes the values this invocation produces.
    pub(crate) serializer: Serializer,
    /// What a value must meet to be stored ([`PayloadLimits::for_values`]).
    pub(crate) limits: PayloadLimits,
    /// Sees every effect before it is matched (debuggers); `None` in the engine.
    pub(crate) observer: Option<Box<dyn Observer>>,
    /// What the code expects of the payload of a signal wait, by seq.
    pub(crate) signal_checks: HashMap<Seq, SignalCheck>,
}

/// What the code waiting for a signal expects of its payload: the name of
/// the type it decodes it into, and whether a payload decodes so.
#[derive(Clone, Copy)]
pub struct SignalCheck {
    /// The type the payload is decoded into.
    pub type_name: &'static str,
    /// `Err(why)` if `payload` does not decode into it.
    pub check: fn(&Payload) -> Result<(), String>,
}

impl fmt::Debug for SignalCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalCheck")
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// What an [`Observer`] sees before the driver matches an effect.
#[derive(Debug, Clone, Copy)]
pub struct EffectView<'a> {
    /// The invocation.
    pub invocation: InvocationId,
    /// The seq the effect takes.
    pub seq: Seq,
    /// The event the code asks for (for the final result: the terminal
    /// event its return value makes).
    pub asked: &'a Event,
    /// What the journal holds at `seq` (`None`: the journal ends before it).
    pub recorded: Option<&'a Event>,
}

/// What an [`Observer`] decides about an effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Match the effect against the journal as usual.
    Proceed,
    /// Take this event as the recorded one at the seq before matching (a
    /// debugger that goes on past a divergence, treating the recorded answer
    /// as given). Ignored where the journal holds nothing at the seq.
    Replace(Event),
    /// Stop the invocation here ([`crate::DriverError::Aborted`] with this message).
    Stop(String),
}

/// Called with every durable effect the code creates, and with its final
/// result, before the driver matches them against the journal. Installed
/// with [`crate::Driver::set_observer`]; the engine never installs one.
///
/// It runs while the driver's state is locked: it must not use the
/// invocation's [`Context`].
pub trait Observer: Send {
    /// Decides what to do with the effect.
    fn observe(&mut self, view: EffectView<'_>) -> Verdict;
}

impl<F> Observer for F
where
    F: FnMut(EffectView<'_>) -> Verdict + Send,
{
    fn observe(&mut self, view: EffectView<'_>) -> Verdict {
        self(view)
    }
}

impl State {
    /// Steps over patch markers at the cursor that the code did not ask
    /// for: their patch was removed from the code, and a marker answers
    /// nothing, so the events after it still match.
    pub(crate) fn skip_unasked_markers(&mut self) {
        while let Some(Event::PatchMarker { .. }) = self.history.get(self.next_seq as usize) {
            self.next_seq += 1;
        }
    }

    /// Decides a patch check at the cursor (see [`Context::patched`]).
    fn patch(&mut self, patch: &str, deprecated: bool) -> bool {
        if self.fatal.is_some() {
            return true;
        }
        let asked = Event::PatchMarker {
            patch: patch.to_string(),
        };
        // Markers recorded together form a run; the one for this patch may
        // follow markers of patches the code no longer has.
        let mut at = self.next_seq as usize;
        while let Some(Event::PatchMarker { patch: p }) = self.history.get(at) {
            if p == patch {
                self.consult_observer(Seq(at as u32), &asked);
                if self.fatal.is_none() {
                    self.next_seq = at as u32 + 1;
                }
                return true;
            }
            at += 1;
        }
        if at == self.history.len() {
            // The journal ends here: the code takes the new branch from now on.
            self.next_seq = at as u32;
            self.consult_observer(Seq(self.next_seq), &asked);
            if self.fatal.is_none() {
                self.history.push(asked);
                self.next_seq += 1;
            }
            return true;
        }
        if !deprecated {
            // Recorded by code that ran before the patch: the old branch.
            return false;
        }
        // The old branch is gone from the code, and this execution took it.
        let seq = Seq(self.next_seq);
        self.consult_observer(seq, &asked);
        if self.fatal.is_none() {
            if self.history.get(seq.0 as usize) == Some(&asked) {
                // A debugger took the marker as given.
                self.next_seq += 1;
                return true;
            }
            self.fatal = Some(DriverError::Diverged(Box::new(Divergence {
                invocation: self.invocation,
                seq,
                recorded: self.history.get(seq.0 as usize).cloned(),
                asked: Some(asked),
            })));
        }
        true
    }

    fn schedule(&mut self, command: Command) -> Seq {
        self.skip_unasked_markers();
        let seq = Seq(self.next_seq);
        if self.fatal.is_none() && self.observer.is_some() {
            let asked = command.to_event(self.invocation, seq, self.now);
            self.consult_observer(seq, &asked);
            if self.fatal.is_some() {
                return seq;
            }
        }
        if let Some(recorded) = self.history.get(seq.0 as usize) {
            if !command.matches(recorded) {
                if self.fatal.is_none() {
                    let asked = command.to_event(self.invocation, seq, self.now);
                    self.fatal = Some(DriverError::Diverged(Box::new(Divergence {
                        invocation: self.invocation,
                        seq,
                        recorded: Some(recorded.clone()),
                        asked: Some(asked),
                    })));
                }
                return seq;
            }
            let recorded = recorded.clone();
            self.next_seq += 1;
            self.register(seq, &recorded);
        } else {
            let event = command.to_event(self.invocation, seq, self.now);
            self.next_seq += 1;
            self.register(seq, &event);
            self.history.push(event);
        }
        seq
    }

    /// Shows `asked` (at `seq`) to the observer, if any, and applies its
    /// verdict: a replaced recorded event, or a stop.
    pub(crate) fn consult_observer(&mut self, seq: Seq, asked: &Event) {
        let Some(mut observer) = self.observer.take() else {
            return;
        };
        let verdict = observer.observe(EffectView {
            invocation: self.invocation,
            seq,
            asked,
            recorded: self.history.get(seq.0 as usize),
        });
        self.observer = Some(observer);
        match verdict {
            Verdict::Proceed => {}
            Verdict::Replace(event) => {
                if let Some(slot) = self.history.get_mut(seq.0 as usize) {
                    *slot = event;
                }
            }
            Verdict::Stop(message) => {
                self.fatal = Some(DriverError::Aborted {
                    invocation: self.invocation,
                    message,
                });
            }
        }
    }

    /// Notes what a command event means for the code: outstanding, or answered at once.
    fn register(&mut self, seq: Seq, event: &Event) {
        match event {
            Event::CallScheduled { child, .. } => {
                self.outstanding
                    .insert(seq, Outstanding::Call { child: *child });
            }
            Event::TimerStarted { fire_at, .. } => {
                self.outstanding
                    .insert(seq, Outstanding::Timer { fire_at: *fire_at });
            }
            Event::SignalAwaited { name } => {
                self.outstanding
                    .insert(seq, Outstanding::Signal { name: name.clone() });
            }
            Event::CacheHit { value, .. } | Event::SideEffect { value } => {
                self.resolved.insert(seq, Resolution::Value(value.clone()));
            }
            Event::ContextWrite { .. } => {
                self.resolved.insert(seq, Resolution::Done);
            }
            _ => {}
        }
    }

    /// Applies a resolution event that sits at `next_seq` in `history`.
    pub(crate) fn apply_resolution(&mut self, event: &Event) -> Result<(), DriverError> {
        let seq = Seq(self.next_seq);
        let target = event.resolves().ok_or_else(|| DriverError::Corrupt {
            invocation: self.invocation,
            seq,
            reason: format!("{} is not a resolution", event.kind()),
        })?;
        let expected = self.outstanding.get(&target);
        let fits = matches!(
            (event, expected),
            (
                Event::CallCompleted { .. } | Event::CallFailed { .. },
                Some(Outstanding::Call { .. })
            ) | (Event::TimerFired { .. }, Some(Outstanding::Timer { .. }))
                | (
                    Event::SignalReceived { .. },
                    Some(Outstanding::Signal { .. })
                )
        );
        if !fits {
            return Err(DriverError::Corrupt {
                invocation: self.invocation,
                seq,
                reason: format!(
                    "{} answers seq {target}, which is not an outstanding effect of that kind",
                    event.kind()
                ),
            });
        }
        self.outstanding.remove(&target);
        let resolution = match event {
            Event::CallCompleted { value, .. } => Resolution::Value(value.clone()),
            Event::SignalReceived { payload, .. } => Resolution::Value(payload.clone()),
            Event::CallFailed { failure, .. } => Resolution::Failed(failure.clone()),
            _ => Resolution::Done,
        };
        self.resolved.insert(target, resolution);
        self.next_seq += 1;
        if let Some(w) = self.wakers.remove(&target) {
            w.wake();
        }
        Ok(())
    }
}

/// A handle on the running invocation, found through [`Context::current`].
#[derive(Clone)]
pub struct Context {
    pub(crate) state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("invocation", &self.invocation())
            .finish()
    }
}

impl Context {
    /// The invocation whose code is being polled on this thread, if any.
    pub fn current() -> Option<Context> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Like [`Context::current`], with a clear error when there is none.
    pub fn try_current() -> Result<Context, NoContext> {
        Self::current().ok_or(NoContext)
    }

    pub(crate) fn enter(&self) -> CurrentGuard {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        CurrentGuard { previous }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in user code never happens while this lock is held, so a
        // poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The idempotency key of the running invocation, for an `idempotent`
    /// function (set by the engine before the body runs).
    pub fn idempotency_key(&self) -> Option<String> {
        self.lock().idempotency_key.clone()
    }

    /// The serializer the engine encodes this invocation's values with
    /// (arguments of calls, results, context writes).
    pub fn serializer(&self) -> Serializer {
        self.lock().serializer
    }

    /// What a value this invocation produces (arguments of a call, a
    /// result, a context write) must meet to be stored:
    /// [`PayloadLimits::for_values`] of the engine's limits.
    pub fn value_limits(&self) -> PayloadLimits {
        self.lock().limits.for_values()
    }

    /// The running invocation's id.
    pub fn invocation(&self) -> InvocationId {
        self.lock().invocation
    }

    /// The time the engine handed in for the current turn
    /// ([`crate::Driver::set_now`]); replay reads no clock itself.
    ///
    /// This value differs from run to run: code that uses it must journal it
    /// first (the engine's `Stent::now()` records it as a
    /// [`Command::SideEffect`] and replays the recorded value).
    pub fn turn_time(&self) -> Timestamp {
        self.lock().now
    }

    /// Creates a durable effect now (taking the next seq) and returns the
    /// future of its answer.
    pub fn schedule(&self, command: Command) -> Effect {
        let seq = self.lock().schedule(command);
        Effect {
            ctx: self.clone(),
            seq,
        }
    }

    /// Whether the code takes the new branch of `patch` here: true when the
    /// journal holds the patch's marker at this point (replayed) or ends
    /// here (the marker is recorded now), false when the journal holds
    /// something else here, written by code that ran before the patch.
    ///
    /// With `deprecated`, the old branch is gone from the code: an execution
    /// that took it stops with a divergence whose asked event is the
    /// patch's marker, so its report names the patch. A marker the code no
    /// longer asks for at all is stepped over on replay.
    pub fn patched(&self, patch: &str, deprecated: bool) -> bool {
        self.lock().patch(patch, deprecated)
    }

    /// Whether the driver is stopping the invocation (a divergence or an
    /// abort was recorded); synchronous effects use it to stop the code
    /// from going on blindly.
    pub fn is_stopping(&self) -> bool {
        self.lock().fatal.is_some()
    }

    /// Records what the code waiting at `effect` (a signal wait) expects of
    /// the signal's payload, so the engine can set aside a signal that does
    /// not fit before it is journaled ([`crate::Driver::check_signal`]).
    pub fn expect_signal(&self, effect: &Effect, check: SignalCheck) {
        self.lock().signal_checks.insert(effect.seq, check);
    }

    /// Records that the code could not go on (for example a recorded value no
    /// longer decodes as the type the code expects). The driver stops the
    /// invocation with this message.
    pub fn abort(&self, message: impl Into<String>) {
        let mut st = self.lock();
        if st.fatal.is_none() {
            st.fatal = Some(DriverError::Aborted {
                invocation: st.invocation,
                message: message.into(),
            });
        }
    }
}

pub(crate) struct CurrentGuard {
    previous: Option<Context>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The future of one durable effect's answer.
pub struct Effect {
    ctx: Context,
    seq: Seq,
}

impl Effect {
    /// The seq this effect took.
    pub fn seq(&self) -> Seq {
        self.seq
    }
}

impl Future for Effect {
    type Output = Resolution;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Resolution> {
        let mut st = self.ctx.lock();
        if st.fatal.is_some() {
            // The driver stops the invocation; never answer.
            return Poll::Pending;
        }
        if let Some(r) = st.resolved.remove(&self.seq) {
            return Poll::Ready(r);
        }
        st.wakers.insert(self.seq, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Effect {
    /// The code no longer waits for this effect (a lost race, a cancelled
    /// branch): stop counting it as outstanding, so nothing is delivered to
    /// it — a later signal goes to a later wait, a timer does not keep the
    /// invocation awake. Drops happen at the same point of the code on every
    /// run, so this is as deterministic as the code.
    fn drop(&mut self) {
        let mut st = self.ctx.lock();
        st.outstanding.remove(&self.seq);
        st.wakers.remove(&self.seq);
        st.resolved.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context as TaskCx, Waker};

    use super::*;
    use crate::{Driver, DriverError, Status};
    use stent_journal::EventKind;

    #[test]
    fn an_abort_wins_over_a_result_returned_in_the_same_poll() {
        let started = Event::Started {
            function: "demo::wf".into(),
            version: None,
            args: Payload::encode(&()).unwrap(),
            parent: None,
            forked_from: None,
        };
        let code = async {
            let ctx = Context::current().expect("inside a driver");
            assert_eq!(ctx.turn_time(), Timestamp(42));
            drop(ctx.schedule(Command::SideEffect {
                value: Payload::encode(&1).unwrap(),
            }));
            // A synchronous read found a value it cannot use, and the code
            // goes on to return: the driver must still stop it.
            ctx.abort("recorded value of the wrong kind");
            Ok(Payload::encode(&"ignored").unwrap())
        };
        let id = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let mut driver = Driver::new(id, vec![started], Box::pin(code)).unwrap();
        driver.set_now(Timestamp(42));
        let status = driver.advance(&mut TaskCx::from_waker(Waker::noop()));
        assert!(
            matches!(status, Status::Stopped(DriverError::Aborted { .. })),
            "{status:?}"
        );
    }

    #[test]
    fn an_observer_sees_each_effect_and_can_replace_the_recorded_event() {
        let id: InvocationId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let started = Event::Started {
            function: "demo::wf".into(),
            version: None,
            args: Payload::encode(&()).unwrap(),
            parent: None,
            forked_from: None,
        };
        let recorded_call = Command::call("demo::step", None, Payload::encode(&(1,)).unwrap())
            .to_event(id, Seq(1), Timestamp(0));
        let journal = vec![
            started,
            recorded_call,
            Event::CallCompleted {
                scheduled: Seq(1),
                value: Payload::encode(&5).unwrap(),
            },
            Event::Completed {
                value: Payload::encode(&5).unwrap(),
            },
        ];
        let code = async {
            let ctx = Context::current().expect("inside a driver");
            // The code now passes 2 where the journal recorded 1.
            let answer = ctx
                .schedule(Command::call(
                    "demo::step",
                    None,
                    Payload::encode(&(2,)).unwrap(),
                ))
                .await;
            Ok(answer.into_value().unwrap())
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut driver = Driver::new(id, journal, Box::pin(code)).unwrap();
        driver.set_observer(move |view: EffectView<'_>| {
            log.lock().unwrap().push((view.seq, view.asked.kind()));
            match view.recorded {
                Some(r) if r != view.asked && view.asked.kind() == EventKind::CallScheduled => {
                    Verdict::Replace(view.asked.clone())
                }
                _ => Verdict::Proceed,
            }
        });
        let status = driver.advance(&mut TaskCx::from_waker(Waker::noop()));
        assert!(matches!(status, Status::Finished(Ok(_))), "{status:?}");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Seq(1), EventKind::CallScheduled),
                (Seq(3), EventKind::Completed)
            ]
        );
    }

    #[test]
    fn an_observer_can_stop_the_invocation() {
        let started = Event::Started {
            function: "demo::wf".into(),
            version: None,
            args: Payload::encode(&()).unwrap(),
            parent: None,
            forked_from: None,
        };
        let code = async {
            let ctx = Context::current().expect("inside a driver");
            drop(ctx.schedule(Command::Signal { name: "go".into() }));
            Ok(Payload::encode(&()).unwrap())
        };
        let id = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let mut driver = Driver::new(id, vec![started], Box::pin(code)).unwrap();
        driver.set_observer(|_: EffectView<'_>| Verdict::Stop("quit".into()));
        let status = driver.advance(&mut TaskCx::from_waker(Waker::noop()));
        assert!(
            matches!(&status, Status::Stopped(DriverError::Aborted { message, .. }) if message == "quit"),
            "{status:?}"
        );
        assert!(driver.take_new_events().is_empty());
    }
}
