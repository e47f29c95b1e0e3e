//! Execution-scoped context and deterministic reads from inside a durable
//! function: `Stent::context()` (counters and custom state), `Stent::now()`,
//! `Stent::uuid()` and `Stent::random()`.
//!
//! Every write and every read is a durable effect: it takes the next seq in
//! program order and is recorded in the invocation's journal (a
//! `ContextWrite` or a `SideEffect` event). A replay (after a crash, an
//! eviction, a retry) matches the recorded event instead of writing again,
//! so counters never count twice and reads return what the first run saw.
//!
//! The read side lives here too: [`Stent::state_of`] folds the journal of
//! every invocation of an execution into counters, custom state and
//! per-call progress.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use stent_journal::event::{ContextWrite, ForkOrigin};
use stent_journal::{
    CallKey, CodecError, Event, InvocationId, Payload, Seq, Serializer, Timestamp,
};
use stent_replay::{Command, Context, Resolution};

use crate::error::{Error, Result};
use crate::executor::Stent;

/// Execution-scoped counters and custom state, from inside a durable
/// function. Get one with [`Stent::context`] or [`Stent::context_with`].
///
/// Counters and state belong to the whole execution: a nested durable
/// function writes to the same ones as its caller. Read them from outside
/// with [`Stent::state_of`].
///
/// ```no_run
/// use stent::Stent;
///
/// #[stent::durable]
/// async fn import(rows: Vec<String>) -> Result<usize, String> {
///     let ctx = Stent::context().map_err(|e| e.to_string())?;
///     ctx.state("phase").set("importing").map_err(|e| e.to_string())?;
///     for _row in &rows {
///         ctx.counters("imported").add(1).map_err(|e| e.to_string())?;
///     }
///     Ok(rows.len())
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ExecutionContext {
    _private: (),
}

impl ExecutionContext {
    /// The counter `name` (created at 0 by its first [`Counter::add`], or at
    /// its default, see [`ContextDefaults::counter`]).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// stent::Stent::context()?.counters("processed").add(3)?;
    /// # Ok(()) }
    /// ```
    pub fn counters(&self, name: &str) -> Counter {
        Counter {
            name: name.to_string(),
        }
    }

    /// The custom-state entry `key`.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// stent::Stent::context()?.state("phase").set("shipping")?;
    /// # Ok(()) }
    /// ```
    pub fn state(&self, key: &str) -> StateEntry {
        StateEntry {
            key: key.to_string(),
        }
    }
}

/// One execution-scoped counter; see [`ExecutionContext::counters`].
///
/// Counters are `f64`: every integer up to 2^53 is exact, and
/// [`Counter::add`] accepts only types that convert to `f64` without loss.
#[derive(Debug, Clone)]
pub struct Counter {
    name: String,
}

impl Counter {
    /// The counter's name.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// assert_eq!(stent::Stent::context()?.counters("done").name(), "done");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds `by` (negative to subtract). Journaled: a replay of this write
    /// does not add again. [`Error::InvalidArgument`] for NaN or infinity,
    /// [`Error::NoContext`] outside a running execution.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// let ctx = stent::Stent::context()?;
    /// ctx.counters("items").add(1)?;
    /// ctx.counters("bytes").add(1.5)?;
    /// ctx.counters("items").add(u32::MAX)?;
    /// # Ok(()) }
    /// ```
    pub fn add(&self, by: impl Into<f64>) -> Result<()> {
        let ctx = Context::try_current()?;
        let by = finite(by.into(), "counter", &self.name)?;
        write_in(
            &ctx,
            ContextWrite::CounterAdd {
                name: self.name.clone(),
                by,
            },
        )
    }
}

/// One execution-scoped custom-state entry; see [`ExecutionContext::state`].
#[derive(Debug, Clone)]
pub struct StateEntry {
    key: String,
}

impl StateEntry {
    /// The entry's key.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// assert_eq!(stent::Stent::context()?.state("phase").key(), "phase");
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sets the entry to `value` (any serde value; stored as CBOR, read back
    /// with [`crate::ExecutionState::custom_state_as`] or [`Payload::decode`]).
    /// Journaled: a replay does not write again. [`Error::NoContext`] outside
    /// a running execution, [`Error::Codec`] if the value does not encode.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), stent::Error> {
    /// let ctx = stent::Stent::context()?;
    /// ctx.state("phase").set("review")?;
    /// ctx.state("reviewers").set(&vec!["ana", "bo"])?;
    /// # Ok(()) }
    /// ```
    pub fn set<V: Serialize + ?Sized>(&self, value: &V) -> Result<()> {
        let ctx = Context::try_current()?;
        let value = ctx.serializer().encode(value)?;
        value.check(ctx.value_limits())?;
        write_in(
            &ctx,
            ContextWrite::StateSet {
                key: self.key.clone(),
                value,
            },
        )
    }
}

/// Starting values for counters and custom state, given to
/// [`Stent::context_with`] (the seed's `Stent.context(counters=…, state=…)`).
///
/// A default applies only if nothing wrote that counter or key earlier in
/// the execution (in journal order); later writes build on it. Defaults are
/// journaled in name order, so building them from a `HashMap` replays alike.
///
/// ```no_run
/// use stent::{ContextDefaults, Stent};
///
/// # fn demo() -> Result<(), stent::Error> {
/// let ctx = Stent::context_with(
///     ContextDefaults::new()
///         .counter("progress", 0)
///         .state("phase", "start"),
/// )?;
/// ctx.counters("progress").add(1)?; // 1
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ContextDefaults {
    counters: BTreeMap<String, f64>,
    state: BTreeMap<String, Payload>,
    error: Option<Error>,
}

impl ContextDefaults {
    /// No defaults.
    ///
    /// ```
    /// let none = stent::ContextDefaults::new();
    /// # let _ = none;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Counter `name` starts at `value` unless already written. A NaN or
    /// infinite value makes [`Stent::context_with`] fail.
    ///
    /// ```
    /// let d = stent::ContextDefaults::new().counter("done", 0).counter("ratio", 0.5);
    /// # let _ = d;
    /// ```
    pub fn counter(mut self, name: &str, value: impl Into<f64>) -> Self {
        match finite(value.into(), "default of counter", name) {
            Ok(v) => {
                self.counters.insert(name.to_string(), v);
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Custom-state `key` starts at `value` unless already set. A value that
    /// does not encode makes [`Stent::context_with`] fail.
    ///
    /// ```
    /// let d = stent::ContextDefaults::new().state("phase", "start").state("tries", &3);
    /// # let _ = d;
    /// ```
    pub fn state<V: Serialize + ?Sized>(mut self, key: &str, value: &V) -> Self {
        match Payload::encode(value) {
            Ok(p) => {
                self.state.insert(key.to_string(), p);
            }
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }
}

/// What a `SideEffect` written by `Stent::now/uuid/random` holds: tagged, so
/// a replay can tell which read recorded it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Read {
    /// Milliseconds since the Unix epoch.
    Now(i64),
    Uuid(uuid::Uuid),
    Random(f64),
}

impl Read {
    fn name(&self) -> &'static str {
        match self {
            Read::Now(_) => "Stent::now()",
            Read::Uuid(_) => "Stent::uuid()",
            Read::Random(_) => "Stent::random()",
        }
    }
}

impl Stent {
    /// The execution-scoped counters and custom state of the running
    /// execution. [`Error::NoContext`] outside a running execution (or in a
    /// task spawned from one).
    ///
    /// ```no_run
    /// use stent::Stent;
    ///
    /// #[stent::durable]
    /// async fn step() -> Result<(), String> {
    ///     let ctx = Stent::context().map_err(|e| e.to_string())?;
    ///     ctx.counters("steps").add(1).map_err(|e| e.to_string())
    /// }
    /// ```
    pub fn context() -> Result<ExecutionContext> {
        Context::try_current()?;
        Ok(ExecutionContext { _private: () })
    }

    /// Like [`Stent::context`], first journaling starting values (applied
    /// only where nothing was written yet; see [`ContextDefaults`]).
    ///
    /// ```no_run
    /// use stent::{ContextDefaults, Stent};
    ///
    /// #[stent::durable]
    /// async fn wf() -> Result<(), String> {
    ///     let defaults = ContextDefaults::new().counter("progress", 0).state("phase", "start");
    ///     let ctx = Stent::context_with(defaults).map_err(|e| e.to_string())?;
    ///     ctx.state("phase").set("running").map_err(|e| e.to_string())
    /// }
    /// ```
    pub fn context_with(defaults: ContextDefaults) -> Result<ExecutionContext> {
        let ctx = Context::try_current()?;
        if let Some(e) = defaults.error {
            return Err(e);
        }
        for (name, value) in defaults.counters {
            write_in(&ctx, ContextWrite::CounterDefault { name, value })?;
        }
        let serializer = ctx.serializer();
        for (key, value) in defaults.state {
            // Defaults were encoded before the serializer was known; bring
            // them into its data model (a no-op for the default, CBOR).
            let value = match serializer {
                Serializer::Cbor => value,
                other => other.encode(&value.to_value()?)?,
            };
            value.check(ctx.value_limits())?;
            write_in(&ctx, ContextWrite::StateDefault { key, value })?;
        }
        Ok(ExecutionContext { _private: () })
    }

    /// The current time, deterministically: the first run reads the engine's
    /// clock and journals it; a replay returns the recorded instant
    /// (millisecond precision on both). [`Error::NoContext`] outside a
    /// running execution.
    ///
    /// ```no_run
    /// #[stent::durable]
    /// async fn stamp() -> Result<String, String> {
    ///     let now = stent::Stent::now().map_err(|e| e.to_string())?;
    ///     Ok(now.to_rfc3339())
    /// }
    /// ```
    pub fn now() -> Result<DateTime<Utc>> {
        let ctx = Context::try_current()?;
        let read = Read::Now(ctx.turn_time().millis());
        match side_effect(&ctx, read)? {
            Read::Now(ms) => Ok(Timestamp(ms).to_datetime()),
            _ => unreachable!("side_effect checks the kind"),
        }
    }

    /// A random (v4) UUID, deterministically: fresh on the first run,
    /// the recorded one on replay. [`Error::NoContext`] outside a running
    /// execution.
    ///
    /// ```no_run
    /// #[stent::durable]
    /// async fn order() -> Result<String, String> {
    ///     let id = stent::Stent::uuid().map_err(|e| e.to_string())?;
    ///     Ok(format!("order-{id}"))
    /// }
    /// ```
    pub fn uuid() -> Result<uuid::Uuid> {
        let ctx = Context::try_current()?;
        match side_effect(&ctx, Read::Uuid(fresh_uuid()))? {
            Read::Uuid(u) => Ok(u),
            _ => unreachable!("side_effect checks the kind"),
        }
    }

    /// A random number in `[0, 1)`, deterministically: fresh on the first
    /// run, the recorded one on replay. [`Error::NoContext`] outside a
    /// running execution.
    ///
    /// ```no_run
    /// #[stent::durable]
    /// async fn coin() -> Result<bool, String> {
    ///     Ok(stent::Stent::random().map_err(|e| e.to_string())? < 0.5)
    /// }
    /// ```
    pub fn random() -> Result<f64> {
        let ctx = Context::try_current()?;
        let bytes = fresh_uuid().into_bytes();
        // Bytes 0..6 and 10..16 of a v4 UUID are all random (byte 6 holds the
        // version, byte 8 the variant): 64 random bits, of which 53 are used.
        let mut bits = [0u8; 8];
        bits[..6].copy_from_slice(&bytes[..6]);
        bits[6..].copy_from_slice(&bytes[10..12]);
        let x = (u64::from_be_bytes(bits) >> 11) as f64 / (1u64 << 53) as f64;
        match side_effect(&ctx, Read::Random(x))? {
            Read::Random(x) => Ok(x),
            _ => unreachable!("side_effect checks the kind"),
        }
    }
}

/// Patches: branching workflow code so that executions started on the old
/// code replay it while new ones take the new branch.
impl Stent {
    /// Whether this execution takes the new branch of the patch `patch`.
    ///
    /// Put a change to a workflow behind it while executions recorded by
    /// the old code are in flight. An execution that reaches this point for
    /// the first time records the patch's marker in its journal and gets
    /// `true`; one replaying a journal that holds the marker here gets
    /// `true`; one replaying a journal written by the old code (something
    /// else recorded here) gets `false` and must run the old code.
    /// Once no execution needs the old branch, replace the call with
    /// [`Stent::deprecate_patch`], and later remove that too.
    /// [`Error::NoContext`] outside a running execution.
    ///
    /// ```no_run
    /// # #[stent::durable] async fn ship_by_road(order: u64) -> Result<(), String> { Ok(()) }
    /// # #[stent::durable] async fn ship_by_air(order: u64) -> Result<(), String> { Ok(()) }
    /// #[stent::durable]
    /// async fn deliver(order: u64) -> Result<(), String> {
    ///     if stent::Stent::patched("ship-by-air").map_err(|e| e.to_string())? {
    ///         ship_by_air(order).await
    ///     } else {
    ///         ship_by_road(order).await
    ///     }
    /// }
    /// ```
    pub fn patched(patch: &str) -> Result<bool> {
        check_patch(patch, false)
    }

    /// Marks the point where the patch `patch` was, after its old branch is
    /// removed from the code: new executions still record the marker (so a
    /// rollback to the code with [`Stent::patched`] stays safe), replays
    /// accept it, and an execution that took the old branch pauses with a
    /// report naming the patch instead of running code it never ran.
    /// [`Error::NoContext`] outside a running execution.
    ///
    /// ```no_run
    /// # #[stent::durable] async fn ship_by_air(order: u64) -> Result<(), String> { Ok(()) }
    /// #[stent::durable]
    /// async fn deliver(order: u64) -> Result<(), String> {
    ///     stent::Stent::deprecate_patch("ship-by-air").map_err(|e| e.to_string())?;
    ///     ship_by_air(order).await
    /// }
    /// ```
    pub fn deprecate_patch(patch: &str) -> Result<()> {
        check_patch(patch, true).map(|_| ())
    }
}

/// The patch check of the running invocation (see
/// [`stent_replay::Context::patched`]): whether it takes the new branch,
/// or an error when the driver is stopping it.
fn check_patch(patch: &str, deprecated: bool) -> Result<bool> {
    check_patch_id(patch)?;
    let ctx = Context::try_current()?;
    let taken = ctx.patched(patch, deprecated);
    if ctx.is_stopping() {
        return Err(stopping_at_patch(patch));
    }
    Ok(taken)
}

/// The longest patch id accepted, in bytes.
const MAX_PATCH_ID: usize = 200;

fn check_patch_id(patch: &str) -> Result<()> {
    if patch.trim().is_empty() || patch.len() > MAX_PATCH_ID || patch.chars().any(char::is_control)
    {
        return Err(Error::InvalidArgument(format!(
            "patch id {:?}: give a non-empty name of at most {MAX_PATCH_ID} bytes without control characters",
            patch.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// A fresh random UUID. Only ever used as the first-run value of a journaled
/// side effect; replays use the recorded value.
#[allow(clippy::disallowed_methods)] // journaled as a SideEffect: replays never see this value
fn fresh_uuid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

fn finite(value: f64, what: &str, name: &str) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {name:?}: {value} is not a finite number"
        )))
    }
}

/// The error a synchronous effect returns when the driver is stopping the
/// invocation (the code no longer matches its journal). The driver reports
/// the divergence itself; this only keeps the code from going on blindly.
fn stopping(what: &str, seq: Seq) -> Error {
    Error::Codec(CodecError::Decode {
        what: "journal",
        reason: format!(
            "{what} at seq {seq} does not match the recorded journal (non-determinism); the engine stops this invocation and reports it"
        ),
    })
}

/// [`stopping`], for a patch check: the driver reports where.
fn stopping_at_patch(patch: &str) -> Error {
    Error::Codec(CodecError::Decode {
        what: "journal",
        reason: format!(
            "the check of patch {patch:?} found a journal the code no longer matches (non-determinism); the engine stops this invocation and reports it"
        ),
    })
}

pub(crate) fn write_in(ctx: &Context, w: ContextWrite) -> Result<()> {
    let effect = ctx.schedule(Command::ContextWrite(w));
    let seq = effect.seq();
    // Answered at once (first run and replay alike) unless it diverged.
    match effect.now_or_never() {
        Some(_) => Ok(()),
        None => Err(stopping("a context write", seq)),
    }
}

/// Journals `read` (or matches the recorded one) and returns the recorded
/// value, which is of the same kind as `read`.
fn side_effect(ctx: &Context, read: Read) -> Result<Read> {
    let what = read.name();
    let value = Payload::encode(&read)?;
    let effect = ctx.schedule(Command::SideEffect { value });
    let seq = effect.seq();
    let recorded = match effect.now_or_never() {
        Some(Resolution::Value(p)) => p,
        Some(other) => {
            let message = format!("{what} at seq {seq} was answered by {other:?}");
            ctx.abort(message.clone());
            return Err(Error::JournalMismatch(message));
        }
        None => return Err(stopping(what, seq)),
    };
    let decoded: std::result::Result<Read, CodecError> = recorded.decode();
    match decoded {
        Ok(r) if std::mem::discriminant(&r) == std::mem::discriminant(&read) => Ok(r),
        Ok(r) => {
            let message = format!(
                "{what} at seq {seq} found the recorded value of {} (the code no longer matches its journal)",
                r.name()
            );
            ctx.abort(message.clone());
            Err(stopping(what, seq))
        }
        Err(e) => {
            ctx.abort(format!(
                "the side effect recorded at seq {seq} is not a value of {what}: {e}"
            ));
            Err(e.into())
        }
    }
}

/// Where a durable call stands, in [`ExecutionProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgressState {
    /// Scheduled, no result yet.
    Scheduled,
    /// Returned `Ok` (or was answered from the cache).
    Completed,
    /// Failed for good (after its retries).
    Failed,
}

impl ProgressState {
    /// `"scheduled"`, `"completed"` or `"failed"`.
    ///
    /// ```
    /// assert_eq!(stent::ProgressState::Completed.as_str(), "completed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ProgressState::Scheduled => "scheduled",
            ProgressState::Completed => "completed",
            ProgressState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ProgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One durable call made inside an execution (by the root or by any nested
/// invocation), as [`Stent::state_of`] reports it in
/// [`crate::ExecutionState::progress`].
///
/// ```no_run
/// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
/// for call in executor.state_of(id).await?.progress {
///     println!("{:?} {} since {}", call.function, call.state, call.started_at);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ExecutionProgress {
    /// The function called; `None` when the call was answered from the cache
    /// (the journal then holds only its call key).
    pub function: Option<String>,
    /// The call key (function, version and arguments).
    pub call_key: CallKey,
    /// The invocation that made the call.
    pub invocation: InvocationId,
    /// The seq of the call in that invocation's journal.
    pub seq: Seq,
    /// The invocation that runs the call (`None` for a cache hit).
    pub child: Option<InvocationId>,
    /// Where it stands.
    pub state: ProgressState,
    /// True if answered from the cache or the idempotency store.
    pub cached: bool,
    /// When the call was journaled.
    pub started_at: DateTime<Utc>,
    /// When its result was journaled.
    pub completed_at: Option<DateTime<Utc>>,
}

/// One decoded journal event of some invocation of an execution.
pub(crate) struct FoldRow {
    pub invocation: InvocationId,
    pub seq: Seq,
    pub recorded_at: Timestamp,
    pub event: Event,
}

/// What `state_of` derives from the journal.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    pub counters: BTreeMap<String, f64>,
    pub custom_state: BTreeMap<String, Payload>,
    pub progress: Vec<ExecutionProgress>,
    /// Where the root journal was forked from.
    pub forked_from: Option<ForkOrigin>,
}

/// Folds the events of an execution's invocations in an order consistent
/// with what happened: each invocation's events in seq order; a callee's
/// events after the `CallScheduled` that created it and before the
/// `CallCompleted`/`CallFailed` that reports its end; otherwise (calls
/// running side by side) by `recorded_at`, ties by invocation id. So a
/// default and a write in different invocations apply in the order they
/// were made, even when a parent and its child commit in one transaction.
pub(crate) fn fold(rows: Vec<FoldRow>) -> Derived {
    let mut folder = Folder::default();
    let mut children = std::collections::HashSet::new();
    for row in rows {
        if let Event::CallScheduled { child, .. } = &row.event {
            children.insert(*child);
        }
        folder.queues.entry(row.invocation).or_default().push(row);
    }
    for queue in folder.queues.values_mut() {
        queue.sort_by_key(|r| Reverse(r.seq)); // popped from the back
    }
    // Invocations no journaled call created start at once (the root).
    let roots: Vec<InvocationId> = folder
        .queues
        .keys()
        .filter(|i| !children.contains(i))
        .copied()
        .collect();
    for root in roots {
        folder.activate(root);
    }
    while let Some(Reverse((_, invocation, seq))) = folder.ready.pop() {
        let head = folder.queues.get(&invocation).and_then(|q| q.last());
        if head.is_some_and(|r| r.seq == seq) {
            folder.emit(invocation);
        }
    }
    folder.out
}

#[derive(Default)]
struct Folder {
    /// Unfolded rows of each invocation, highest seq first.
    queues: BTreeMap<InvocationId, Vec<FoldRow>>,
    /// Heads of started invocations, by (recorded_at, invocation, seq).
    /// Entries whose row was folded meanwhile are skipped.
    ready: BinaryHeap<Reverse<(Timestamp, InvocationId, Seq)>>,
    /// (caller, seq of its CallScheduled) → the callee.
    callees: BTreeMap<(InvocationId, Seq), InvocationId>,
    /// (caller, seq) → index in `out.progress`.
    calls: BTreeMap<(InvocationId, Seq), usize>,
    out: Derived,
}

impl Folder {
    /// Makes the next row of `invocation` eligible.
    fn activate(&mut self, invocation: InvocationId) {
        if let Some(head) = self.queues.get(&invocation).and_then(|q| q.last()) {
            self.ready
                .push(Reverse((head.recorded_at, invocation, head.seq)));
        }
    }

    /// Folds the next row of `invocation`; a call's end first folds all that
    /// is left of the callee.
    fn emit(&mut self, invocation: InvocationId) {
        let Some(row) = self.queues.get_mut(&invocation).and_then(Vec::pop) else {
            return;
        };
        match &row.event {
            Event::CallScheduled { child, .. } => {
                self.callees.insert((invocation, row.seq), *child);
                self.activate(*child);
            }
            Event::CallCompleted { scheduled, .. } | Event::CallFailed { scheduled, .. } => {
                if let Some(child) = self.callees.get(&(invocation, *scheduled)).copied() {
                    while self.queues.get(&child).is_some_and(|q| !q.is_empty()) {
                        self.emit(child);
                    }
                }
            }
            _ => {}
        }
        apply(&mut self.out, &mut self.calls, row);
        self.activate(invocation);
    }
}

fn apply(out: &mut Derived, calls: &mut BTreeMap<(InvocationId, Seq), usize>, row: FoldRow) {
    let at = row.recorded_at.to_datetime();
    match row.event {
        Event::ContextWrite { write } => match write {
            ContextWrite::CounterAdd { name, by } => {
                *out.counters.entry(name).or_insert(0.0) += by;
            }
            ContextWrite::CounterDefault { name, value } => {
                out.counters.entry(name).or_insert(value);
            }
            ContextWrite::StateSet { key, value } => {
                out.custom_state.insert(key, value);
            }
            ContextWrite::StateDefault { key, value } => {
                out.custom_state.entry(key).or_insert(value);
            }
            // Read only when the execution is cancelled (crate::compensation).
            ContextWrite::OnCancel { .. } => {}
        },
        Event::CallScheduled {
            function,
            call_key,
            child,
            ..
        } => {
            calls.insert((row.invocation, row.seq), out.progress.len());
            out.progress.push(ExecutionProgress {
                function: Some(function),
                call_key,
                invocation: row.invocation,
                seq: row.seq,
                child: Some(child),
                state: ProgressState::Scheduled,
                cached: false,
                started_at: at,
                completed_at: None,
            });
        }
        Event::Started {
            parent: None,
            forked_from: Some(origin),
            ..
        } => out.forked_from = Some(origin),
        Event::CacheHit {
            call_key, function, ..
        } => out.progress.push(ExecutionProgress {
            function,
            call_key,
            invocation: row.invocation,
            seq: row.seq,
            child: None,
            state: ProgressState::Completed,
            cached: true,
            started_at: at,
            completed_at: Some(at),
        }),
        Event::CallCompleted { scheduled, .. } | Event::CallFailed { scheduled, .. } => {
            let failed = matches!(row.event, Event::CallFailed { .. });
            if let Some(&i) = calls.get(&(row.invocation, scheduled)) {
                let p = &mut out.progress[i];
                p.state = if failed {
                    ProgressState::Failed
                } else {
                    ProgressState::Completed
                };
                p.completed_at = Some(at);
            }
        }
        _ => {}
    }
}

/// `"3/5 calls done"`, with `", 1 failed"` when some failed.
pub(crate) fn progress_summary(progress: &[ExecutionProgress]) -> String {
    let total = progress.len();
    let failed = progress
        .iter()
        .filter(|p| p.state == ProgressState::Failed)
        .count();
    let done = progress
        .iter()
        .filter(|p| p.state != ProgressState::Scheduled)
        .count();
    let noun = if total == 1 { "call" } else { "calls" };
    if failed > 0 {
        format!("{done}/{total} {noun} done, {failed} failed")
    } else {
        format!("{done}/{total} {noun} done")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(inv: InvocationId, seq: u32, at: i64, event: Event) -> FoldRow {
        FoldRow {
            invocation: inv,
            seq: Seq(seq),
            recorded_at: Timestamp(at),
            event,
        }
    }

    fn cw(write: ContextWrite) -> Event {
        Event::ContextWrite { write }
    }

    #[test]
    fn defaults_apply_only_where_nothing_was_written_earlier() {
        let a: InvocationId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let b = InvocationId::child_of(a, Seq(1));
        let add = |n: &str, by| cw(ContextWrite::CounterAdd { name: n.into(), by });
        let def = |n: &str, value| {
            cw(ContextWrite::CounterDefault {
                name: n.into(),
                value,
            })
        };
        let rows = vec![
            // The child's rows come first in the input but later in time.
            row(b, 1, 20, def("x", 100.0)),
            row(b, 2, 20, add("x", 1.0)),
            row(a, 1, 10, def("x", 5.0)),
            row(a, 2, 10, add("x", 2.0)),
            row(a, 3, 30, add("y", 1.0)),
            row(a, 4, 30, def("y", 50.0)),
            row(
                a,
                5,
                30,
                cw(ContextWrite::StateDefault {
                    key: "k".into(),
                    value: Payload::encode(&"d").unwrap(),
                }),
            ),
            row(
                a,
                6,
                30,
                cw(ContextWrite::StateSet {
                    key: "k".into(),
                    value: Payload::encode(&"s").unwrap(),
                }),
            ),
            row(
                a,
                7,
                30,
                cw(ContextWrite::StateDefault {
                    key: "k".into(),
                    value: Payload::encode(&"late").unwrap(),
                }),
            ),
        ];
        let d = fold(rows);
        assert_eq!(d.counters["x"], 8.0);
        assert_eq!(d.counters["y"], 1.0);
        assert_eq!(d.custom_state["k"].decode::<String>().unwrap(), "s");
    }

    #[test]
    fn a_callee_folds_inside_its_call_even_when_timestamps_tie() {
        let root: InvocationId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let args = Payload::encode(&()).unwrap();
        // Try both id orders of caller and callee.
        for callee in [
            InvocationId::child_of(root, Seq(1)),
            "00000000-0000-4000-8000-000000000000".parse().unwrap(),
            "ffffffff-ffff-4fff-bfff-ffffffffffff".parse().unwrap(),
        ] {
            let rows = vec![
                row(
                    root,
                    4,
                    10,
                    cw(ContextWrite::CounterDefault {
                        name: "x".into(),
                        value: 100.0,
                    }),
                ),
                row(
                    root,
                    1,
                    10,
                    Event::CallScheduled {
                        function: "app::child".into(),
                        version: None,
                        call_key: CallKey::new("app::child", None, &args),
                        args: args.clone(),
                        child: callee,
                    },
                ),
                row(
                    root,
                    3,
                    10,
                    Event::CallCompleted {
                        scheduled: Seq(1),
                        value: args.clone(),
                    },
                ),
                // Recorded "later" than the parent's default, but it ran first.
                row(
                    callee,
                    2,
                    11,
                    cw(ContextWrite::CounterAdd {
                        name: "x".into(),
                        by: 3.0,
                    }),
                ),
            ];
            let d = fold(rows);
            assert_eq!(d.counters["x"], 3.0, "callee {callee}");
            assert_eq!(d.progress.len(), 1);
            assert_eq!(d.progress[0].state, ProgressState::Completed);
            assert_eq!(progress_summary(&d.progress), "1/1 call done");
        }
    }

    #[test]
    fn progress_summary_counts_done_and_failed() {
        assert_eq!(progress_summary(&[]), "0/0 calls done");
    }

    #[test]
    fn patch_ids_are_names_a_person_can_read() {
        assert!(check_patch_id("ship-by-air").is_ok());
        assert!(check_patch_id("2026-12 pricing, v2").is_ok());
        let long = "x".repeat(MAX_PATCH_ID + 1);
        for bad in ["", "   ", "line\nbreak", long.as_str()] {
            let err = check_patch_id(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains("patch id"), "{err}");
        }
        // Outside a running execution: a clear error, not a panic.
        assert!(matches!(
            Stent::patched("ship-by-air"),
            Err(Error::NoContext(_))
        ));
        assert!(matches!(
            Stent::deprecate_patch("ship-by-air"),
            Err(Error::NoContext(_))
        ));
    }
}
