//! The driver: polls one invocation's code against its journal, applying
//! recorded answers in journal order and collecting new events.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};

use stent_journal::{
    Event, Failure, InvocationId, Payload, PayloadLimits, Seq, Serializer, Timestamp,
};

use crate::context::{Context, Observer, Outstanding, State};

/// The code of one invocation: resolves to its encoded `Ok` value or a failure.
pub type InvocationFuture = Pin<Box<dyn Future<Output = Result<Payload, Failure>> + Send>>;

/// The code and the journal disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The invocation.
    pub invocation: InvocationId,
    /// Where.
    pub seq: Seq,
    /// What the journal holds there (`None`: the journal ends there).
    pub recorded: Option<Event>,
    /// What the code asked for (`None`: the code asked nothing, it waits).
    pub asked: Option<Event>,
}

fn describe(event: &Event) -> String {
    match event {
        Event::CallScheduled {
            function, call_key, ..
        } => format!("call_scheduled {function} (call key {})", call_key.short()),
        Event::CacheHit { call_key, .. } => format!("cache_hit (call key {})", call_key.short()),
        Event::SignalAwaited { name } => format!("signal_awaited {name:?}"),
        Event::TimerStarted { duration_ms, .. } => format!("timer_started ({duration_ms} ms)"),
        Event::Completed { value } => format!("completed with {value:?}"),
        Event::Failed { failure } => format!("failed: {failure}"),
        Event::PatchMarker { patch } => format!("the marker of patch {patch:?}"),
        other => other.kind().to_string(),
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = self
            .recorded
            .as_ref()
            .map(describe)
            .unwrap_or_else(|| "nothing (the journal ends there)".into());
        let asked = self
            .asked
            .as_ref()
            .map(describe)
            .unwrap_or_else(|| "nothing (the code is waiting)".into());
        write!(
            f,
            "non-determinism in invocation {} at seq {}: the journal recorded {recorded}, but the code asked for {asked}",
            self.invocation, self.seq
        )
    }
}

/// Why a driver stopped without a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The code no longer matches its journal.
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// The journal is inconsistent in itself.
    #[error("journal of invocation {invocation} is inconsistent at seq {seq}: {reason}")]
    Corrupt {
        /// The invocation.
        invocation: InvocationId,
        /// Where.
        seq: Seq,
        /// What is wrong.
        reason: String,
    },
    /// The code gave up (see [`Context::abort`]).
    #[error("invocation {invocation} aborted: {message}")]
    Aborted {
        /// The invocation.
        invocation: InvocationId,
        /// Why.
        message: String,
    },
}

/// Where a driver stands after [`Driver::advance`].
#[derive(Debug)]
pub enum Status {
    /// The code waits for outstanding effects (see [`Driver::outstanding`]).
    Blocked,
    /// The journal holds events the code has not reached yet, and the code
    /// waits for something that is not a durable effect (real I/O). Poll again
    /// when woken. A pure replay treats this as a divergence.
    Behind,
    /// The code returned. For a replayed terminal event the result matched the
    /// journal; otherwise the terminal event is among the new events.
    Finished(Result<Payload, Failure>),
    /// The code cannot go on.
    Stopped(DriverError),
}

/// Runs one invocation's code against its journal.
pub struct Driver {
    ctx: Context,
    future: Option<InvocationFuture>,
    /// Length of the journal already stored (events before it are not "new").
    stored_len: usize,
    finished: bool,
    /// The waker handed to the code in the last poll.
    last_waker: Option<Arc<FlagWaker>>,
}

struct FlagWaker {
    flag: AtomicBool,
    inner: Mutex<Waker>,
}

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::SeqCst);
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wake_by_ref();
    }
}

/// Whether the code woke itself since its last poll; see [`Driver::wake_flag`].
#[derive(Clone)]
pub struct WakeFlag(Option<Arc<FlagWaker>>);

impl WakeFlag {
    /// True once the code asked to be polled again.
    pub fn is_set(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|w| w.flag.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for WakeFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WakeFlag({})", self.is_set())
    }
}

/// Polls in one go at most this many times while the code keeps waking itself.
const MAX_SELF_WAKES: usize = 100_000;

impl Driver {
    /// A driver for the invocation `invocation` whose stored journal is
    /// `journal` (starting with `Started` at seq 0) and whose code is `future`.
    pub fn new(
        invocation: InvocationId,
        journal: Vec<Event>,
        future: InvocationFuture,
    ) -> Result<Driver, DriverError> {
        match journal.first() {
            Some(Event::Started { .. }) => {}
            other => {
                return Err(DriverError::Corrupt {
                    invocation,
                    seq: Seq(0),
                    reason: format!(
                        "the journal must start with a started event, found {}",
                        other.map(|e| e.kind().as_str()).unwrap_or("nothing")
                    ),
                });
            }
        }
        let stored_len = journal.len();
        let state = State {
            invocation,
            history: journal,
            taken_len: stored_len,
            next_seq: 1,
            now: Timestamp(0),
            resolved: Default::default(),
            outstanding: Default::default(),
            wakers: Default::default(),
            fatal: None,
            idempotency_key: None,
            serializer: Serializer::default(),
            limits: PayloadLimits::default(),
            observer: None,
            signal_checks: HashMap::new(),
        };
        Ok(Driver {
            ctx: Context {
                state: Arc::new(Mutex::new(state)),
            },
            future: Some(future),
            stored_len,
            finished: false,
            last_waker: None,
        })
    }

    /// The invocation.
    pub fn invocation(&self) -> InvocationId {
        self.ctx.invocation()
    }

    /// Sets the time used for new timers (the engine's clock; replay never reads one).
    pub fn set_now(&mut self, now: Timestamp) {
        self.ctx.lock().now = now;
    }

    /// The seq the next event will take.
    pub fn next_seq(&self) -> Seq {
        Seq(self.ctx.lock().next_seq)
    }

    /// Number of journal events known to the driver (stored and new).
    pub fn journal_len(&self) -> usize {
        self.ctx.lock().history.len()
    }

    /// The whole journal as the driver knows it.
    pub fn journal(&self) -> Vec<Event> {
        self.ctx.lock().history.clone()
    }

    /// True once the code returned (or the driver stopped).
    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// Effects the code waits for, by seq.
    pub fn outstanding(&self) -> Vec<(Seq, Outstanding)> {
        self.ctx
            .lock()
            .outstanding
            .iter()
            .map(|(s, o)| (*s, o.clone()))
            .collect()
    }

    /// Shows every durable effect the code creates, and its final result, to
    /// `observer` before matching it against the journal (debuggers: stepping,
    /// going on past a divergence). See [`crate::Observer`].
    pub fn set_observer(&mut self, observer: impl Observer + 'static) {
        self.ctx.lock().observer = Some(Box::new(observer));
    }

    /// Makes `key` visible to the code as its idempotency key.
    pub fn set_idempotency_key(&mut self, key: String) {
        self.ctx.lock().idempotency_key = Some(key);
    }

    /// Sets the limits the values the invocation's code produces must meet
    /// ([`Context::value_limits`]); [`PayloadLimits::default`] unless set.
    pub fn set_limits(&mut self, limits: PayloadLimits) {
        self.ctx.lock().limits = limits;
    }

    /// Sets the serializer the invocation's code encodes values with
    /// ([`Context::serializer`]); [`Serializer::Cbor`] unless set.
    pub fn set_serializer(&mut self, serializer: Serializer) {
        self.ctx.lock().serializer = serializer;
    }

    /// The `Started` event at seq 0.
    pub fn started_event(&self) -> Event {
        self.ctx.lock().history[0].clone()
    }

    /// Calls scheduled since the last [`Driver::take_new_events`] that are
    /// still outstanding: `(seq, function, call key)`.
    pub fn pending_new_calls(&self) -> Vec<(Seq, String, stent_journal::CallKey)> {
        let st = self.ctx.lock();
        let from = st.taken_len.max(self.stored_len);
        st.history[from..]
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::CallScheduled {
                    function, call_key, ..
                } => {
                    let seq = Seq((from + i) as u32);
                    st.outstanding
                        .contains_key(&seq)
                        .then(|| (seq, function.clone(), *call_key))
                }
                _ => None,
            })
            .collect()
    }

    /// Answers a call scheduled since the last [`Driver::take_new_events`]
    /// from a cache: its event becomes a `CacheHit` and the code gets `value`.
    /// False if `seq` is not such a call.
    pub fn answer_from_cache(&mut self, seq: Seq, value: Payload) -> bool {
        let mut st = self.ctx.lock();
        let from = st.taken_len.max(self.stored_len);
        let idx = seq.0 as usize;
        if idx < from || !st.outstanding.contains_key(&seq) {
            return false;
        }
        let Some(Event::CallScheduled {
            call_key,
            function,
            version,
            ..
        }) = st.history.get(idx)
        else {
            return false;
        };
        st.history[idx] = Event::CacheHit {
            call_key: *call_key,
            function: Some(function.clone()),
            version: version.clone(),
            value: value.clone(),
        };
        st.outstanding.remove(&seq);
        st.resolved
            .insert(seq, crate::context::Resolution::Value(value));
        if let Some(w) = st.wakers.remove(&seq) {
            w.wake();
        }
        true
    }

    /// The outstanding effect at `seq`, if the code still waits for one there.
    pub fn outstanding_at(&self, seq: Seq) -> Option<Outstanding> {
        self.ctx.lock().outstanding.get(&seq).cloned()
    }

    /// Whether `payload` fits what the code waiting for a signal at `seq`
    /// expects ([`Context::expect_signal`]): `Err` with the type and why
    /// not. Always `Ok` for a wait that said nothing.
    pub fn check_signal(&self, seq: Seq, payload: &Payload) -> Result<(), (String, &'static str)> {
        let check = self.ctx.lock().signal_checks.get(&seq).copied();
        match check {
            Some(c) => (c.check)(payload).map_err(|why| (why, c.type_name)),
            None => Ok(()),
        }
    }

    /// How many events [`Driver::take_new_events`] would return now.
    pub fn new_events_len(&self) -> usize {
        let st = self.ctx.lock();
        st.history
            .len()
            .saturating_sub(st.taken_len.max(self.stored_len))
    }

    /// Events appended since the last call, with their seqs, for the engine to store.
    pub fn take_new_events(&mut self) -> Vec<(Seq, Event)> {
        let mut st = self.ctx.lock();
        let from = st.taken_len.max(self.stored_len);
        let out: Vec<(Seq, Event)> = st.history[from..]
            .iter()
            .enumerate()
            .map(|(i, e)| (Seq((from + i) as u32), e.clone()))
            .collect();
        st.taken_len = st.history.len();
        out
    }

    /// Appends a resolution (a call's result, a timer firing, a signal) at the
    /// next seq and applies it. Call [`Driver::advance`] after each one.
    pub fn resolve(&mut self, event: Event) -> Result<Seq, DriverError> {
        let mut st = self.ctx.lock();
        if (st.next_seq as usize) < st.history.len() {
            return Err(DriverError::Corrupt {
                invocation: st.invocation,
                seq: Seq(st.next_seq),
                reason: "a new resolution arrived while recorded events are still unread".into(),
            });
        }
        let seq = Seq(st.next_seq);
        st.apply_resolution(&event)?;
        st.history.push(event);
        Ok(seq)
    }

    /// Polls the code, applying recorded resolutions in journal order, until
    /// it returns or waits for something not yet in the journal.
    pub fn advance(&mut self, cx: &mut std::task::Context<'_>) -> Status {
        if self.finished {
            return Status::Stopped(DriverError::Aborted {
                invocation: self.invocation(),
                message: "the invocation already finished".into(),
            });
        }
        loop {
            let out = self.poll_code(cx);
            // A fatal report wins over a result: synchronous effects
            // (`Stent::now()`, context writes) cannot keep the code waiting,
            // so the code may return after one of them diverged or aborted.
            let fatal = self.ctx.lock().fatal.clone();
            if let (Some(out), None) = (out, &fatal) {
                return self.finish(out);
            }
            if let Some(err) = fatal {
                self.finished = true;
                self.future = None;
                return Status::Stopped(err);
            }
            let mut st = self.ctx.lock();
            // The code asked for everything it could before waiting: a
            // marker here belongs to a patch it no longer has.
            st.skip_unasked_markers();
            let next = st.next_seq as usize;
            let Some(event) = st.history.get(next).cloned() else {
                return Status::Blocked;
            };
            if event.kind().is_resolution() {
                if let Err(e) = st.apply_resolution(&event) {
                    drop(st);
                    self.finished = true;
                    self.future = None;
                    return Status::Stopped(e);
                }
                continue;
            }
            return Status::Behind;
        }
    }

    /// True if the code woke itself (real I/O completed) since it was last
    /// polled: call [`Driver::advance`] again.
    pub fn woken(&self) -> bool {
        self.last_waker
            .as_ref()
            .is_some_and(|w| w.flag.load(Ordering::SeqCst))
    }

    /// A handle that tells, from another task, whether the code woke itself
    /// since its last poll (see [`Driver::woken`]).
    pub fn wake_flag(&self) -> WakeFlag {
        WakeFlag(self.last_waker.clone())
    }

    /// Treats [`Status::Behind`] as a divergence: for pure replays of code that
    /// must not wait on anything but durable effects.
    pub fn divergence_if_behind(&self) -> Divergence {
        let st = self.ctx.lock();
        Divergence {
            invocation: st.invocation,
            seq: Seq(st.next_seq),
            recorded: st.history.get(st.next_seq as usize).cloned(),
            asked: None,
        }
    }

    fn poll_code(&mut self, cx: &mut std::task::Context<'_>) -> Option<Result<Payload, Failure>> {
        let future = self.future.as_mut()?;
        let flag = Arc::new(FlagWaker {
            flag: AtomicBool::new(false),
            inner: Mutex::new(cx.waker().clone()),
        });
        self.last_waker = Some(flag.clone());
        let waker = Waker::from(flag.clone());
        let mut inner_cx = std::task::Context::from_waker(&waker);
        for _ in 0..MAX_SELF_WAKES {
            flag.flag.store(false, Ordering::SeqCst);
            let polled = {
                let _guard = self.ctx.enter();
                std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut inner_cx)))
            };
            match polled {
                Ok(Poll::Ready(out)) => return Some(out),
                Err(panic) => {
                    return Some(Err(Failure::Panic {
                        message: panic_message(panic.as_ref()),
                    }));
                }
                Ok(Poll::Pending) => {
                    if self.ctx.lock().fatal.is_some() || !flag.flag.load(Ordering::SeqCst) {
                        return None;
                    }
                }
            }
        }
        // The code kept waking itself: let the executor poll again later.
        cx.waker().wake_by_ref();
        None
    }

    fn finish(&mut self, out: Result<Payload, Failure>) -> Status {
        self.finished = true;
        self.future = None;
        let terminal = match &out {
            Ok(value) => Event::Completed {
                value: value.clone(),
            },
            Err(failure) => Event::Failed {
                failure: failure.clone(),
            },
        };
        let mut st = self.ctx.lock();
        st.skip_unasked_markers();
        let seq = Seq(st.next_seq);
        st.consult_observer(seq, &terminal);
        if let Some(err) = st.fatal.clone() {
            return Status::Stopped(err);
        }
        match st.history.get(seq.0 as usize) {
            None => {
                st.history.push(terminal);
                st.next_seq += 1;
                Status::Finished(out)
            }
            Some(recorded) if *recorded == terminal => {
                st.next_seq += 1;
                Status::Finished(out)
            }
            Some(recorded) => Status::Stopped(DriverError::Diverged(Box::new(Divergence {
                invocation: st.invocation,
                seq,
                recorded: Some(recorded.clone()),
                asked: Some(terminal),
            }))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
