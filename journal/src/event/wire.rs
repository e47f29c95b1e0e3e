//! Events written straight to canonical CBOR, without building a
//! `ciborium::Value` tree and sorting it.
//!
//! Encoding an event is on every step's path (a step writes four), and the
//! general route — serialize to a `Value`, re-encode every map key to sort
//! by it, then write — was about half of the engine's own instructions per
//! step. An event's shape is fixed, so its canonical form can be written
//! directly: every map here declares its fields in canonical order (by
//! encoded key: shorter keys first, then bytewise), and serde writes struct
//! fields in declaration order as a definite-length map, which is exactly
//! what the general route produces. Everything inside is a string, a byte
//! string (payloads, ids, call keys), an integer, `null`, or such a map;
//! user data is an opaque byte string and is not looked into.
//!
//! Context writes keep the general route (their variants' fields are not
//! all declared in canonical order, and they are rare). The tests check
//! this route against the general one, byte for byte, for every kind.

use serde::Serialize;

use super::{Event, FORMAT_VERSION, ForkOrigin, ParentLink};
use crate::codec::{CallKey, Payload, to_cbor};
use crate::error::CodecError;
use crate::ids::{ExecutionId, InvocationId, Seq};
use crate::time::Timestamp;

/// The envelope: `{"b": body, "k": kind, "v": version}`, canonical order.
#[derive(Serialize)]
struct Envelope<'a, B> {
    b: B,
    k: &'a str,
    v: u64,
}

/// [`ParentLink`]'s map: `seq` before `invocation`.
#[derive(Serialize)]
struct Parent {
    seq: Seq,
    invocation: InvocationId,
}

/// [`ForkOrigin`]'s map: `at` before `execution`.
#[derive(Serialize)]
struct Fork {
    at: Seq,
    execution: ExecutionId,
}

#[derive(Serialize)]
struct Started<'a> {
    args: &'a Payload,
    parent: Option<Parent>,
    version: Option<&'a str>,
    function: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    forked_from: Option<Fork>,
}

#[derive(Serialize)]
struct CallScheduled<'a> {
    args: &'a Payload,
    child: InvocationId,
    version: Option<&'a str>,
    call_key: CallKey,
    function: &'a str,
}

#[derive(Serialize)]
struct CallCompleted<'a> {
    value: &'a Payload,
    scheduled: Seq,
}

#[derive(Serialize)]
struct CallFailed<'a> {
    failure: &'a super::Failure,
    scheduled: Seq,
}

#[derive(Serialize)]
struct CacheHit<'a> {
    value: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    call_key: CallKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'a str>,
}

#[derive(Serialize)]
struct TimerStarted {
    fire_at: Timestamp,
    duration_ms: u64,
}

#[derive(Serialize)]
struct TimerFired {
    started: Seq,
}

#[derive(Serialize)]
struct SignalAwaited<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct SignalReceived<'a> {
    awaited: Seq,
    payload: &'a Payload,
}

#[derive(Serialize)]
struct WithValue<'a> {
    value: &'a Payload,
}

#[derive(Serialize)]
struct Failed<'a> {
    failure: &'a super::Failure,
}

#[derive(Serialize)]
struct Cancelled<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct TimedOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<Timestamp>,
}

#[derive(Serialize)]
struct PatchMarker<'a> {
    patch: &'a str,
}

fn parent(link: &Option<ParentLink>) -> Option<Parent> {
    link.map(|p| Parent {
        seq: p.seq,
        invocation: p.invocation,
    })
}

fn fork(origin: &Option<ForkOrigin>) -> Option<Fork> {
    origin.map(|f| Fork {
        at: f.at,
        execution: f.execution,
    })
}

fn write<B: Serialize>(kind: &str, body: B) -> Result<Vec<u8>, CodecError> {
    to_cbor(&Envelope {
        b: body,
        k: kind,
        v: FORMAT_VERSION,
    })
}

/// `event` in canonical CBOR, or `None` for a kind that takes the general
/// route.
pub(super) fn encode(event: &Event) -> Option<Result<Vec<u8>, CodecError>> {
    let kind = event.kind().as_str();
    Some(match event {
        Event::Started {
            function,
            version,
            args,
            parent: link,
            forked_from,
        } => write(
            kind,
            Started {
                args,
                parent: parent(link),
                version: version.as_deref(),
                function,
                forked_from: fork(forked_from),
            },
        ),
        Event::CallScheduled {
            function,
            version,
            call_key,
            args,
            child,
        } => write(
            kind,
            CallScheduled {
                args,
                child: *child,
                version: version.as_deref(),
                call_key: *call_key,
                function,
            },
        ),
        Event::CallCompleted { scheduled, value } => write(
            kind,
            CallCompleted {
                value,
                scheduled: *scheduled,
            },
        ),
        Event::CallFailed { scheduled, failure } => write(
            kind,
            CallFailed {
                failure,
                scheduled: *scheduled,
            },
        ),
        Event::CacheHit {
            call_key,
            function,
            version,
            value,
        } => write(
            kind,
            CacheHit {
                value,
                version: version.as_deref(),
                call_key: *call_key,
                function: function.as_deref(),
            },
        ),
        Event::TimerStarted {
            fire_at,
            duration_ms,
        } => write(
            kind,
            TimerStarted {
                fire_at: *fire_at,
                duration_ms: *duration_ms,
            },
        ),
        Event::TimerFired { started } => write(kind, TimerFired { started: *started }),
        Event::SignalAwaited { name } => write(kind, SignalAwaited { name }),
        Event::SignalReceived { awaited, payload } => write(
            kind,
            SignalReceived {
                awaited: *awaited,
                payload,
            },
        ),
        Event::SideEffect { value } | Event::Completed { value } => {
            write(kind, WithValue { value })
        }
        Event::Failed { failure } => write(kind, Failed { failure }),
        Event::Cancelled { reason } => write(
            kind,
            Cancelled {
                reason: reason.as_deref(),
            },
        ),
        Event::TimedOut { deadline } => write(
            kind,
            TimedOut {
                deadline: *deadline,
            },
        ),
        Event::PatchMarker { patch } => write(kind, PatchMarker { patch }),
        Event::ContextWrite { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{ContextWrite, Event, Failure, ForkOrigin, ParentLink};
    use crate::codec::{CallKey, Payload};
    use crate::ids::{ExecutionId, InvocationId, Seq};
    use crate::time::Timestamp;

    fn payload() -> impl Strategy<Value = Payload> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Payload::from_bytes)
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,30}"
    }

    fn invocation() -> impl Strategy<Value = InvocationId> {
        any::<u128>().prop_map(|n| InvocationId::from_uuid(uuid::Uuid::from_u128(n)))
    }

    fn seq() -> impl Strategy<Value = Seq> {
        any::<u32>().prop_map(Seq)
    }

    fn failure() -> impl Strategy<Value = Failure> {
        prop_oneof![
            payload().prop_map(|error| Failure::Error { error }),
            text().prop_map(|message| Failure::Panic { message }),
            text().prop_map(|message| Failure::Aborted { message }),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        let parent = proptest::option::of((invocation(), seq()))
            .prop_map(|p| p.map(|(invocation, seq)| ParentLink { invocation, seq }));
        let fork = proptest::option::of((any::<u128>(), seq())).prop_map(|f| {
            f.map(|(n, at)| ForkOrigin {
                execution: ExecutionId::from_uuid(uuid::Uuid::from_u128(n)),
                at,
            })
        });
        prop_oneof![
            (
                text(),
                proptest::option::of(text()),
                payload(),
                parent,
                fork
            )
                .prop_map(|(function, version, args, parent, forked_from)| {
                    Event::Started {
                        function,
                        version,
                        args,
                        parent,
                        forked_from,
                    }
                }),
            (
                text(),
                proptest::option::of(text()),
                any::<[u8; 32]>(),
                payload(),
                invocation()
            )
                .prop_map(|(function, version, key, args, child)| {
                    Event::CallScheduled {
                        function,
                        version,
                        call_key: CallKey(key),
                        args,
                        child,
                    }
                }),
            (seq(), payload())
                .prop_map(|(scheduled, value)| Event::CallCompleted { scheduled, value }),
            (seq(), failure())
                .prop_map(|(scheduled, failure)| Event::CallFailed { scheduled, failure }),
            (
                any::<[u8; 32]>(),
                proptest::option::of(text()),
                proptest::option::of(text()),
                payload()
            )
                .prop_map(|(key, function, version, value)| Event::CacheHit {
                    call_key: CallKey(key),
                    function,
                    version,
                    value,
                }),
            (any::<i64>(), any::<u64>()).prop_map(|(at, duration_ms)| Event::TimerStarted {
                fire_at: Timestamp(at),
                duration_ms,
            }),
            seq().prop_map(|started| Event::TimerFired { started }),
            text().prop_map(|name| Event::SignalAwaited { name }),
            (seq(), payload())
                .prop_map(|(awaited, payload)| Event::SignalReceived { awaited, payload }),
            payload().prop_map(|value| Event::SideEffect { value }),
            payload().prop_map(|value| Event::Completed { value }),
            failure().prop_map(|failure| Event::Failed { failure }),
            proptest::option::of(text()).prop_map(|reason| Event::Cancelled { reason }),
            proptest::option::of(any::<i64>()).prop_map(|deadline| Event::TimedOut {
                deadline: deadline.map(Timestamp),
            }),
            text().prop_map(|patch| Event::PatchMarker { patch }),
        ]
    }

    proptest! {
        #[test]
        fn writes_the_bytes_of_the_general_route(event in event()) {
            let direct = super::encode(&event).expect("every kind but context writes")?;
            prop_assert_eq!(&direct, &event.encode_by_value()?);
            prop_assert_eq!(Event::decode(&direct)?, event);
        }
    }

    #[test]
    fn context_writes_take_the_general_route() {
        let event = Event::ContextWrite {
            write: ContextWrite::CounterAdd {
                name: "n".into(),
                by: 1.5,
            },
        };
        assert!(super::encode(&event).is_none());
        let bytes = event.encode().unwrap();
        assert_eq!(bytes, event.encode_by_value().unwrap());
        assert_eq!(Event::decode(&bytes).unwrap(), event);
    }
}
