//! The events an invocation's journal is made of, and their versioned encoding.
//!
//! An encoded event is a CBOR map `{"v": format version, "k": kind, "b": body}`.
//! The kind is also stored in its own column by backends so that tools can
//! filter without decoding. Decoding checks the version first, then the kind,
//! then the body, and says which of the three was wrong.

use std::fmt;

use ciborium::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{CallKey, Payload, PayloadLimits, decode_bytes, encode_canonical};
use crate::error::CodecError;
use crate::ids::{ExecutionId, InvocationId, Seq};
use crate::time::Timestamp;

mod wire;

/// The newest journal format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// Where a child invocation's result must be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The calling invocation.
    pub invocation: InvocationId,
    /// The seq of the `CallScheduled` event in the caller's journal.
    pub seq: Seq,
}

/// Where a forked execution's journal came from: its root journal began as
/// seqs `0..at` of `execution`'s root journal (see `Stent::fork`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkOrigin {
    /// The execution it was forked from.
    pub execution: ExecutionId,
    /// The first seq not copied: seqs `0..at` are copies.
    pub at: Seq,
}

/// Why an invocation or a call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The function returned `Err(e)`; `error` is `e` encoded.
    Error {
        /// The function's error value.
        error: Payload,
    },
    /// The body panicked.
    Panic {
        /// The panic message.
        message: String,
    },
    /// The engine could not go on (for example a recorded value no longer
    /// decodes as the type the code expects).
    Aborted {
        /// What happened.
        message: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error { error } => write!(f, "returned error {error:?}"),
            Failure::Panic { message } => write!(f, "panicked: {message}"),
            Failure::Aborted { message } => write!(f, "aborted: {message}"),
        }
    }
}

/// One entry of an invocation's journal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Always seq 0: what was called, with which arguments, on whose behalf.
    Started {
        /// Registered function name.
        function: String,
        /// The function's declared version, if any.
        version: Option<String>,
        /// Canonical CBOR of the arguments.
        args: Payload,
        /// The caller, for a nested invocation.
        parent: Option<ParentLink>,
        /// For the root of a forked execution: what it was forked from.
        forked_from: Option<ForkOrigin>,
    },
    /// The code called another durable function.
    CallScheduled {
        /// Callee name.
        function: String,
        /// Callee version.
        version: Option<String>,
        /// Call key of the call.
        call_key: CallKey,
        /// Canonical CBOR of the arguments.
        args: Payload,
        /// The child invocation that runs it.
        child: InvocationId,
    },
    /// The call scheduled at `scheduled` returned a value.
    CallCompleted {
        /// Seq of the matching `CallScheduled`.
        scheduled: Seq,
        /// The callee's `Ok` value.
        value: Payload,
    },
    /// The call scheduled at `scheduled` failed for good.
    CallFailed {
        /// Seq of the matching `CallScheduled`.
        scheduled: Seq,
        /// Why.
        failure: Failure,
    },
    /// A call answered from the cache or the idempotency store.
    CacheHit {
        /// Call key that hit.
        call_key: CallKey,
        /// The function called (`None` in journals written before it was
        /// recorded).
        function: Option<String>,
        /// The version of the function whose result the cache held (`None`:
        /// no version, or a journal written before it was recorded).
        version: Option<String>,
        /// The stored value.
        value: Payload,
    },
    /// A durable sleep began.
    TimerStarted {
        /// When it fires.
        fire_at: Timestamp,
        /// The requested length, in milliseconds.
        duration_ms: u64,
    },
    /// The timer started at `started` fired.
    TimerFired {
        /// Seq of the matching `TimerStarted`.
        started: Seq,
    },
    /// The code waits for a signal.
    SignalAwaited {
        /// Signal name.
        name: String,
    },
    /// The wait at `awaited` received a signal.
    SignalReceived {
        /// Seq of the matching `SignalAwaited`.
        awaited: Seq,
        /// The signal's payload.
        payload: Payload,
    },
    /// A write to the execution's counters or custom state.
    ContextWrite {
        /// The write.
        write: ContextWrite,
    },
    /// A value read once (clock, random, uuid) and replayed afterwards.
    SideEffect {
        /// What was read.
        value: Payload,
    },
    /// The invocation returned `Ok(value)`.
    Completed {
        /// The value.
        value: Payload,
    },
    /// The invocation failed.
    Failed {
        /// Why.
        failure: Failure,
    },
    /// The code took the new branch of a patch (`Stent::patched` or
    /// `Stent::deprecate_patch`): executions whose journal holds this marker
    /// at this point run the patched code; those without it run the old.
    /// Code that no longer asks for a patch skips its marker on replay.
    PatchMarker {
        /// The patch's id, as the code names it.
        patch: String,
    },
    /// The execution was cancelled (appended to its root journal when it
    /// ends).
    Cancelled {
        /// Why, or by whom, as the canceller said (`None`: not said).
        reason: Option<String>,
    },
    /// The execution ran past its deadline (appended to its root journal
    /// when it ends).
    TimedOut {
        /// The deadline it passed (`None` in journals written before it was
        /// recorded).
        deadline: Option<Timestamp>,
    },
}

/// A journaled write to the execution context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextWrite {
    /// Add to a counter.
    CounterAdd {
        /// Counter name.
        name: String,
        /// Amount added.
        by: f64,
    },
    /// Set a custom-state key.
    StateSet {
        /// Key.
        key: String,
        /// New value.
        value: Payload,
    },
    /// Give a counter its starting value, unless an earlier write (in
    /// journal order, over the whole execution) already touched it.
    CounterDefault {
        /// Counter name.
        name: String,
        /// Starting value.
        value: f64,
    },
    /// Give a custom-state key its starting value, unless an earlier write
    /// already set it.
    StateDefault {
        /// Key.
        key: String,
        /// Starting value.
        value: Payload,
    },
    /// Register a call to run if the execution is cancelled before it ends
    /// (`Stent::on_cancel`). Registrations run newest first.
    OnCancel {
        /// The function to call.
        function: String,
        /// Its version, part of the call key.
        version: Option<String>,
        /// Its encoded arguments.
        args: Payload,
    },
}

/// The kind of an [`Event`], as stored in a backend's `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// See [`Event::Started`].
    Started,
    /// See [`Event::CallScheduled`].
    CallScheduled,
    /// See [`Event::CallCompleted`].
    CallCompleted,
    /// See [`Event::CallFailed`].
    CallFailed,
    /// See [`Event::CacheHit`].
    CacheHit,
    /// See [`Event::TimerStarted`].
    TimerStarted,
    /// See [`Event::TimerFired`].
    TimerFired,
    /// See [`Event::SignalAwaited`].
    SignalAwaited,
    /// See [`Event::SignalReceived`].
    SignalReceived,
    /// See [`Event::ContextWrite`].
    ContextWrite,
    /// See [`Event::SideEffect`].
    SideEffect,
    /// See [`Event::Completed`].
    Completed,
    /// See [`Event::Failed`].
    Failed,
    /// See [`Event::Cancelled`].
    Cancelled,
    /// See [`Event::TimedOut`].
    TimedOut,
    /// See [`Event::PatchMarker`].
    PatchMarker,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 16] = [
        EventKind::Started,
        EventKind::CallScheduled,
        EventKind::CallCompleted,
        EventKind::CallFailed,
        EventKind::CacheHit,
        EventKind::TimerStarted,
        EventKind::TimerFired,
        EventKind::SignalAwaited,
        EventKind::SignalReceived,
        EventKind::ContextWrite,
        EventKind::SideEffect,
        EventKind::Completed,
        EventKind::Failed,
        EventKind::Cancelled,
        EventKind::TimedOut,
        EventKind::PatchMarker,
    ];

    /// The stored name of the kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::CallScheduled => "call_scheduled",
            EventKind::CallCompleted => "call_completed",
            EventKind::CallFailed => "call_failed",
            EventKind::CacheHit => "cache_hit",
            EventKind::TimerStarted => "timer_started",
            EventKind::TimerFired => "timer_fired",
            EventKind::SignalAwaited => "signal_awaited",
            EventKind::SignalReceived => "signal_received",
            EventKind::ContextWrite => "context_write",
            EventKind::SideEffect => "side_effect",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::TimedOut => "timed_out",
            EventKind::PatchMarker => "patch_marker",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(s: &str) -> Result<EventKind, CodecError> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| CodecError::UnknownKind {
                kind: s.chars().take(80).collect(),
            })
    }

    /// True for events the code asks for (they are matched on replay).
    pub const fn is_command(self) -> bool {
        matches!(
            self,
            EventKind::CallScheduled
                | EventKind::CacheHit
                | EventKind::TimerStarted
                | EventKind::SignalAwaited
                | EventKind::ContextWrite
                | EventKind::SideEffect
                | EventKind::PatchMarker
        )
    }

    /// True for events that answer an earlier command.
    pub const fn is_resolution(self) -> bool {
        matches!(
            self,
            EventKind::CallCompleted
                | EventKind::CallFailed
                | EventKind::TimerFired
                | EventKind::SignalReceived
        )
    }

    /// True for events that end the invocation.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            EventKind::Completed | EventKind::Failed | EventKind::Cancelled | EventKind::TimedOut
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Bodies as written on disk. Kept apart from `Event` so that the enum can grow
// convenience without changing the wire shape.
// Fields added after format version 1 was first written are optional and
// left out when empty, so that older events decode and encode unchanged.
#[derive(Serialize, Deserialize)]
struct StartedBody {
    function: String,
    version: Option<String>,
    args: Payload,
    parent: Option<ParentLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forked_from: Option<ForkOrigin>,
}
#[derive(Serialize, Deserialize)]
struct CallScheduledBody {
    function: String,
    version: Option<String>,
    call_key: CallKey,
    args: Payload,
    child: InvocationId,
}
#[derive(Serialize, Deserialize)]
struct CallCompletedBody {
    scheduled: Seq,
    value: Payload,
}
#[derive(Serialize, Deserialize)]
struct CallFailedBody {
    scheduled: Seq,
    failure: Failure,
}
#[derive(Serialize, Deserialize)]
struct CacheHitBody {
    call_key: CallKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    value: Payload,
}
#[derive(Serialize, Deserialize)]
struct TimerStartedBody {
    fire_at: Timestamp,
    duration_ms: u64,
}
#[derive(Serialize, Deserialize)]
struct TimerFiredBody {
    started: Seq,
}
#[derive(Serialize, Deserialize)]
struct SignalAwaitedBody {
    name: String,
}
#[derive(Serialize, Deserialize)]
struct SignalReceivedBody {
    awaited: Seq,
    payload: Payload,
}
#[derive(Serialize, Deserialize)]
struct ContextWriteBody {
    write: ContextWrite,
}
#[derive(Serialize, Deserialize)]
struct ValueBody {
    value: Payload,
}
#[derive(Serialize, Deserialize)]
struct FailedBody {
    failure: Failure,
}
#[derive(Serialize, Deserialize)]
struct CancelledBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}
#[derive(Serialize, Deserialize)]
struct PatchMarkerBody {
    patch: String,
}
#[derive(Serialize, Deserialize)]
struct TimedOutBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<Timestamp>,
}

#[derive(Deserialize)]
struct Envelope {
    v: u64,
    k: String,
    b: Value,
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Started { .. } => EventKind::Started,
            Event::CallScheduled { .. } => EventKind::CallScheduled,
            Event::CallCompleted { .. } => EventKind::CallCompleted,
            Event::CallFailed { .. } => EventKind::CallFailed,
            Event::CacheHit { .. } => EventKind::CacheHit,
            Event::TimerStarted { .. } => EventKind::TimerStarted,
            Event::TimerFired { .. } => EventKind::TimerFired,
            Event::SignalAwaited { .. } => EventKind::SignalAwaited,
            Event::SignalReceived { .. } => EventKind::SignalReceived,
            Event::ContextWrite { .. } => EventKind::ContextWrite,
            Event::SideEffect { .. } => EventKind::SideEffect,
            Event::Completed { .. } => EventKind::Completed,
            Event::Failed { .. } => EventKind::Failed,
            Event::Cancelled { .. } => EventKind::Cancelled,
            Event::TimedOut { .. } => EventKind::TimedOut,
            Event::PatchMarker { .. } => EventKind::PatchMarker,
        }
    }

    /// The call key, for events that carry one (stored in its own column).
    pub fn call_key(&self) -> Option<CallKey> {
        match self {
            Event::CallScheduled { call_key, .. } | Event::CacheHit { call_key, .. } => {
                Some(*call_key)
            }
            _ => None,
        }
    }

    /// For a resolution event, the seq of the command it answers.
    pub fn resolves(&self) -> Option<Seq> {
        match self {
            Event::CallCompleted { scheduled, .. } | Event::CallFailed { scheduled, .. } => {
                Some(*scheduled)
            }
            Event::TimerFired { started } => Some(*started),
            Event::SignalReceived { awaited, .. } => Some(*awaited),
            _ => None,
        }
    }

    /// Encodes the event with the current format version (canonical CBOR).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        wire::encode(self).unwrap_or_else(|| self.encode_by_value())
    }

    /// The general route to canonical CBOR: the event as a CBOR value tree,
    /// canonicalized, then written. [`wire`] writes the same bytes directly
    /// for every kind but context writes; its tests compare the two.
    fn encode_by_value(&self) -> Result<Vec<u8>, CodecError> {
        let body = match self.clone() {
            Event::Started {
                function,
                version,
                args,
                parent,
                forked_from,
            } => Value::serialized(&StartedBody {
                function,
                version,
                args,
                parent,
                forked_from,
            }),
            Event::CallScheduled {
                function,
                version,
                call_key,
                args,
                child,
            } => Value::serialized(&CallScheduledBody {
                function,
                version,
                call_key,
                args,
                child,
            }),
            Event::CallCompleted { scheduled, value } => {
                Value::serialized(&CallCompletedBody { scheduled, value })
            }
            Event::CallFailed { scheduled, failure } => {
                Value::serialized(&CallFailedBody { scheduled, failure })
            }
            Event::CacheHit {
                call_key,
                function,
                version,
                value,
            } => Value::serialized(&CacheHitBody {
                call_key,
                version,
                function,
                value,
            }),
            Event::TimerStarted {
                fire_at,
                duration_ms,
            } => Value::serialized(&TimerStartedBody {
                fire_at,
                duration_ms,
            }),
            Event::TimerFired { started } => Value::serialized(&TimerFiredBody { started }),
            Event::SignalAwaited { name } => Value::serialized(&SignalAwaitedBody { name }),
            Event::SignalReceived { awaited, payload } => {
                Value::serialized(&SignalReceivedBody { awaited, payload })
            }
            Event::ContextWrite { write } => Value::serialized(&ContextWriteBody { write }),
            Event::SideEffect { value } | Event::Completed { value } => {
                Value::serialized(&ValueBody { value })
            }
            Event::Failed { failure } => Value::serialized(&FailedBody { failure }),
            Event::Cancelled { reason } => Value::serialized(&CancelledBody { reason }),
            Event::TimedOut { deadline } => Value::serialized(&TimedOutBody { deadline }),
            Event::PatchMarker { patch } => Value::serialized(&PatchMarkerBody { patch }),
        }
        .map_err(|e| CodecError::Encode(e.to_string()))?;
        let envelope = Value::Map(vec![
            (
                Value::Text("v".into()),
                Value::Integer(FORMAT_VERSION.into()),
            ),
            (
                Value::Text("k".into()),
                Value::Text(self.kind().as_str().into()),
            ),
            (Value::Text("b".into()), body),
        ]);
        encode_canonical(envelope)
    }

    /// Decodes an event under the default limits.
    pub fn decode(bytes: &[u8]) -> Result<Event, CodecError> {
        Self::decode_with(bytes, PayloadLimits::default())
    }

    /// Decodes an event, enforcing `limits` on the whole encoded event.
    pub fn decode_with(bytes: &[u8], limits: PayloadLimits) -> Result<Event, CodecError> {
        let env: Envelope = decode_bytes(bytes, limits, "journal event")?;
        if env.v > FORMAT_VERSION || env.v == 0 {
            return Err(CodecError::UnsupportedVersion {
                found: env.v,
                supported: FORMAT_VERSION,
            });
        }
        let kind = EventKind::parse(&env.k)?;
        fn body<T: serde::de::DeserializeOwned>(
            v: Value,
            kind: EventKind,
        ) -> Result<T, CodecError> {
            v.deserialized().map_err(|e| CodecError::Decode {
                what: "journal event body",
                reason: format!("{kind} body: {e}"),
            })
        }
        let b = env.b;
        Ok(match kind {
            EventKind::Started => {
                let x: StartedBody = body(b, kind)?;
                Event::Started {
                    function: x.function,
                    version: x.version,
                    args: x.args,
                    parent: x.parent,
                    forked_from: x.forked_from,
                }
            }
            EventKind::CallScheduled => {
                let x: CallScheduledBody = body(b, kind)?;
                Event::CallScheduled {
                    function: x.function,
                    version: x.version,
                    call_key: x.call_key,
                    args: x.args,
                    child: x.child,
                }
            }
            EventKind::CallCompleted => {
                let x: CallCompletedBody = body(b, kind)?;
                Event::CallCompleted {
                    scheduled: x.scheduled,
                    value: x.value,
                }
            }
            EventKind::CallFailed => {
                let x: CallFailedBody = body(b, kind)?;
                Event::CallFailed {
                    scheduled: x.scheduled,
                    failure: x.failure,
                }
            }
            EventKind::CacheHit => {
                let x: CacheHitBody = body(b, kind)?;
                Event::CacheHit {
                    call_key: x.call_key,
                    function: x.function,
                    version: x.version,
                    value: x.value,
                }
            }
            EventKind::TimerStarted => {
                let x: TimerStartedBody = body(b, kind)?;
                Event::TimerStarted {
                    fire_at: x.fire_at,
                    duration_ms: x.duration_ms,
                }
            }
            EventKind::TimerFired => {
                let x: TimerFiredBody = body(b, kind)?;
                Event::TimerFired { started: x.started }
            }
            EventKind::SignalAwaited => {
                let x: SignalAwaitedBody = body(b, kind)?;
                Event::SignalAwaited { name: x.name }
            }
            EventKind::SignalReceived => {
                let x: SignalReceivedBody = body(b, kind)?;
                Event::SignalReceived {
                    awaited: x.awaited,
                    payload: x.payload,
                }
            }
            EventKind::ContextWrite => {
                let x: ContextWriteBody = body(b, kind)?;
                Event::ContextWrite { write: x.write }
            }
            EventKind::SideEffect => {
                let x: ValueBody = body(b, kind)?;
                Event::SideEffect { value: x.value }
            }
            EventKind::Completed => {
                let x: ValueBody = body(b, kind)?;
                Event::Completed { value: x.value }
            }
            EventKind::Failed => {
                let x: FailedBody = body(b, kind)?;
                Event::Failed { failure: x.failure }
            }
            EventKind::Cancelled => {
                let x: CancelledBody = body(b, kind)?;
                Event::Cancelled { reason: x.reason }
            }
            EventKind::TimedOut => {
                let x: TimedOutBody = body(b, kind)?;
                Event::TimedOut {
                    deadline: x.deadline,
                }
            }
            EventKind::PatchMarker => {
                let x: PatchMarkerBody = body(b, kind)?;
                Event::PatchMarker { patch: x.patch }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_events() -> Vec<Event> {
        let args = Payload::encode(&(7u32, "x")).unwrap();
        let inv: InvocationId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        vec![
            Event::Started {
                function: "app::wf".into(),
                version: Some("v1".into()),
                args: args.clone(),
                parent: Some(ParentLink {
                    invocation: inv,
                    seq: Seq(3),
                }),
                forked_from: Some(ForkOrigin {
                    execution: "0b8b0a1e-5c0e-4c5e-9d3e-2f7d3a6e1c11".parse().unwrap(),
                    at: Seq(4),
                }),
            },
            Event::CallScheduled {
                function: "app::step".into(),
                version: None,
                call_key: CallKey::new("app::step", None, &args),
                args: args.clone(),
                child: InvocationId::child_of(inv, Seq(1)),
            },
            Event::CallCompleted {
                scheduled: Seq(1),
                value: Payload::encode(&42u64).unwrap(),
            },
            Event::CallFailed {
                scheduled: Seq(1),
                failure: Failure::Panic {
                    message: "boom".into(),
                },
            },
            Event::CacheHit {
                call_key: CallKey::new("app::step", Some("v2"), &args),
                function: Some("app::step".into()),
                version: Some("v2".into()),
                value: Payload::encode(&"cached").unwrap(),
            },
            Event::TimerStarted {
                fire_at: Timestamp(1_700_000_000_000),
                duration_ms: 3_600_000,
            },
            Event::TimerFired { started: Seq(5) },
            Event::SignalAwaited {
                name: "approval".into(),
            },
            Event::SignalReceived {
                awaited: Seq(7),
                payload: Payload::encode(&true).unwrap(),
            },
            Event::ContextWrite {
                write: ContextWrite::CounterAdd {
                    name: "done".into(),
                    by: 1.0,
                },
            },
            Event::SideEffect {
                value: Payload::encode(&0.5f64).unwrap(),
            },
            Event::Completed {
                value: Payload::encode(&"ok").unwrap(),
            },
            Event::Failed {
                failure: Failure::Error {
                    error: Payload::encode(&"bad").unwrap(),
                },
            },
            Event::Cancelled {
                reason: Some("stent cancel, by alice".into()),
            },
            Event::TimedOut {
                deadline: Some(Timestamp(1_700_000_360_000)),
            },
            Event::PatchMarker {
                patch: "ship-by-air".into(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let events = sample_events();
        assert_eq!(events.len(), EventKind::ALL.len());
        for e in events {
            let bytes = e.encode().unwrap();
            assert_eq!(Event::decode(&bytes).unwrap(), e);
            assert_eq!(EventKind::parse(e.kind().as_str()).unwrap(), e.kind());
        }
    }

    #[test]
    fn newer_version_is_a_clear_error() {
        let v = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(2.into())),
            (Value::Text("k".into()), Value::Text("cancelled".into())),
            (Value::Text("b".into()), Value::Map(vec![])),
        ]);
        let bytes = encode_canonical(v).unwrap();
        let err = Event::decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            CodecError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
    }

    #[test]
    fn unknown_kind_is_a_clear_error() {
        let v = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(1.into())),
            (Value::Text("k".into()), Value::Text("teleported".into())),
            (Value::Text("b".into()), Value::Map(vec![])),
        ]);
        let err = Event::decode(&encode_canonical(v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("teleported"), "{err}");
    }

    #[test]
    fn truncated_events_never_panic() {
        for e in sample_events() {
            let bytes = e.encode().unwrap();
            for cut in 0..bytes.len() {
                assert!(Event::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
