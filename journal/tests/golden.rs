//! Golden bytes: the encoding of every event kind and the call keys of known
//! arguments must never change, or recorded journals stop replaying. If one
//! of these fails, the change broke the format: bump FORMAT_VERSION and add a
//! reader for the old one instead of editing the expected value.

use std::collections::{BTreeMap, HashMap};

use stent_journal::event::{ContextWrite, ForkOrigin, ParentLink};
use stent_journal::{CallKey, Event, Failure, InvocationId, Payload, Seq, Timestamp};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn inv() -> InvocationId {
    "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap()
}

fn events() -> Vec<(&'static str, Event)> {
    let args = Payload::encode(&(7u32, "x")).unwrap();
    vec![
        (
            "started",
            Event::Started {
                function: "app::wf".into(),
                version: Some("v1".into()),
                args: args.clone(),
                parent: Some(ParentLink {
                    invocation: inv(),
                    seq: Seq(3),
                }),
                forked_from: None,
            },
        ),
        (
            "call_scheduled",
            Event::CallScheduled {
                function: "app::step".into(),
                version: None,
                call_key: CallKey::new("app::step", None, &args),
                args: args.clone(),
                child: InvocationId::child_of(inv(), Seq(1)),
            },
        ),
        (
            "call_completed",
            Event::CallCompleted {
                scheduled: Seq(1),
                value: Payload::encode(&42u64).unwrap(),
            },
        ),
        (
            "call_failed",
            Event::CallFailed {
                scheduled: Seq(1),
                failure: Failure::Error {
                    error: Payload::encode(&"no").unwrap(),
                },
            },
        ),
        (
            "cache_hit",
            Event::CacheHit {
                call_key: CallKey::new("app::step", Some("v2"), &args),
                function: None,
                version: None,
                value: Payload::encode(&"cached").unwrap(),
            },
        ),
        (
            "timer_started",
            Event::TimerStarted {
                fire_at: Timestamp(1_700_000_000_000),
                duration_ms: 3_600_000,
            },
        ),
        ("timer_fired", Event::TimerFired { started: Seq(5) }),
        (
            "signal_awaited",
            Event::SignalAwaited {
                name: "approval".into(),
            },
        ),
        (
            "signal_received",
            Event::SignalReceived {
                awaited: Seq(7),
                payload: Payload::encode(&true).unwrap(),
            },
        ),
        (
            "context_write",
            Event::ContextWrite {
                write: ContextWrite::StateSet {
                    key: "phase".into(),
                    value: Payload::encode(&"running").unwrap(),
                },
            },
        ),
        (
            "side_effect",
            Event::SideEffect {
                value: Payload::encode(&0.5f64).unwrap(),
            },
        ),
        (
            "completed",
            Event::Completed {
                value: Payload::encode(&"ok").unwrap(),
            },
        ),
        (
            "failed",
            Event::Failed {
                failure: Failure::Panic {
                    message: "boom".into(),
                },
            },
        ),
        ("cancelled", Event::Cancelled { reason: None }),
        ("timed_out", Event::TimedOut { deadline: None }),
        // Fields added later: present only when set, so the events above
        // keep their bytes.
        (
            "started_forked",
            Event::Started {
                function: "app::wf".into(),
                version: None,
                args: args.clone(),
                parent: None,
                forked_from: Some(ForkOrigin {
                    execution: "0b8b0a1e-5c0e-4c5e-9d3e-2f7d3a6e1c11".parse().unwrap(),
                    at: Seq(4),
                }),
            },
        ),
        (
            "cache_hit_named",
            Event::CacheHit {
                call_key: CallKey::new("app::step", None, &args),
                function: Some("app::step".into()),
                version: None,
                value: Payload::encode(&"cached").unwrap(),
            },
        ),
        (
            "cancelled_with_reason",
            Event::Cancelled {
                reason: Some("by alice".into()),
            },
        ),
        (
            "timed_out_with_deadline",
            Event::TimedOut {
                deadline: Some(Timestamp(1_700_000_000_000)),
            },
        ),
        (
            "cache_hit_versioned",
            Event::CacheHit {
                call_key: CallKey::new("app::step", Some("v2"), &args),
                function: Some("app::step".into()),
                version: Some("v2".into()),
                value: Payload::encode(&"cached").unwrap(),
            },
        ),
        (
            "patch_marker",
            Event::PatchMarker {
                patch: "ship-by-air".into(),
            },
        ),
    ]
}

const GOLDEN_EVENTS: &[(&str, &str)] = &[
    (
        "started",
        "a36162a46461726773448207617866706172656e74a263736571036a696e766f636174696f6e506f9619ff8b86d011b42d00c04fc964ff6776657273696f6e6276316866756e6374696f6e676170703a3a7766616b6773746172746564617601",
    ),
    (
        "call_scheduled",
        "a36162a564617267734482076178656368696c64504405420ff09e80f4bd5af8eb9d161a2c6776657273696f6ef66863616c6c5f6b657958203f018ef2091d30fe6e3afbf231c3bf8333bd23299b833842ae175817b05a0e2c6866756e6374696f6e696170703a3a73746570616b6e63616c6c5f7363686564756c6564617601",
    ),
    (
        "call_completed",
        "a36162a26576616c756542182a697363686564756c656401616b6e63616c6c5f636f6d706c65746564617601",
    ),
    (
        "call_failed",
        "a36162a2676661696c757265a1656572726f72a1656572726f7243626e6f697363686564756c656401616b6b63616c6c5f6661696c6564617601",
    ),
    (
        "cache_hit",
        "a36162a26576616c756547666361636865646863616c6c5f6b657958209b9b9419707a1b2bf4a58c480f91051523f53fcc28f2b5d0a422a097cebb1360616b6963616368655f686974617601",
    ),
    (
        "timer_started",
        "a36162a267666972655f61741b0000018bcfe568006b6475726174696f6e5f6d731a0036ee80616b6d74696d65725f73746172746564617601",
    ),
    (
        "timer_fired",
        "a36162a1677374617274656405616b6b74696d65725f6669726564617601",
    ),
    (
        "signal_awaited",
        "a36162a1646e616d6568617070726f76616c616b6e7369676e616c5f61776169746564617601",
    ),
    (
        "signal_received",
        "a36162a2676177616974656407677061796c6f616441f5616b6f7369676e616c5f7265636569766564617601",
    ),
    (
        "context_write",
        "a36162a1657772697465a16973746174655f736574a2636b65796570686173656576616c7565486772756e6e696e67616b6d636f6e746578745f7772697465617601",
    ),
    (
        "side_effect",
        "a36162a16576616c756543f93800616b6b736964655f656666656374617601",
    ),
    (
        "completed",
        "a36162a16576616c756543626f6b616b69636f6d706c65746564617601",
    ),
    (
        "failed",
        "a36162a1676661696c757265a16570616e6963a1676d65737361676564626f6f6d616b666661696c6564617601",
    ),
    ("cancelled", "a36162a0616b6963616e63656c6c6564617601"),
    ("timed_out", "a36162a0616b6974696d65645f6f7574617601"),
    (
        "started_forked",
        "a36162a56461726773448207617866706172656e74f66776657273696f6ef66866756e6374696f6e676170703a3a77666b666f726b65645f66726f6da26261740469657865637574696f6e500b8b0a1e5c0e4c5e9d3e2f7d3a6e1c11616b6773746172746564617601",
    ),
    (
        "cache_hit_named",
        "a36162a36576616c756547666361636865646863616c6c5f6b657958203f018ef2091d30fe6e3afbf231c3bf8333bd23299b833842ae175817b05a0e2c6866756e6374696f6e696170703a3a73746570616b6963616368655f686974617601",
    ),
    (
        "cancelled_with_reason",
        "a36162a166726561736f6e68627920616c696365616b6963616e63656c6c6564617601",
    ),
    (
        "timed_out_with_deadline",
        "a36162a168646561646c696e651b0000018bcfe56800616b6974696d65645f6f7574617601",
    ),
    (
        "cache_hit_versioned",
        "a36162a46576616c756547666361636865646776657273696f6e6276326863616c6c5f6b657958209b9b9419707a1b2bf4a58c480f91051523f53fcc28f2b5d0a422a097cebb13606866756e6374696f6e696170703a3a73746570616b6963616368655f686974617601",
    ),
    (
        "patch_marker",
        "a36162a16570617463686b736869702d62792d616972616b6c70617463685f6d61726b6572617601",
    ),
];

const GOLDEN_KEYS: &[(&str, &str)] = &[
    (
        "no_args",
        "41c5bc4d07f9c81b95f105b43d6e649e7320c25ccf41412bd65dde3a10797dd8",
    ),
    (
        "int_and_string",
        "7d6610c90a068fc415ab77c7596c6a548c112e85c460ae8a0d0631485dcf9080",
    ),
    (
        "versioned",
        "cf32c073a08300e9cea4651b9056ee5ca3b3e536fd745ddacf88a2972e08e45a",
    ),
    (
        "hashmap_20_keys",
        "0fb47e93d07670704f45a63fc8922b55504be4fde10d2746f3dec534f2c2581a",
    ),
    (
        "nested",
        "f11a087c9f0163fc6c971e345262f677b3816056f85a3f335884a4f870269369",
    ),
];

fn known_keys() -> Vec<(&'static str, CallKey)> {
    let map: HashMap<String, u32> = (0..20).map(|i| (format!("key{i}"), i)).collect();
    let nested: BTreeMap<&str, Vec<Option<i64>>> =
        [("b", vec![Some(-1), None]), ("a", vec![Some(i64::MAX)])].into();
    vec![
        (
            "no_args",
            CallKey::new("shop::ping", None, &Payload::encode(&()).unwrap()),
        ),
        (
            "int_and_string",
            CallKey::new(
                "shop::charge",
                None,
                &Payload::encode(&(42u64, "eur")).unwrap(),
            ),
        ),
        (
            "versioned",
            CallKey::new(
                "shop::charge",
                Some("v2"),
                &Payload::encode(&(42u64, "eur")).unwrap(),
            ),
        ),
        (
            "hashmap_20_keys",
            CallKey::new("shop::bulk", None, &Payload::encode(&(map,)).unwrap()),
        ),
        (
            "nested",
            CallKey::new(
                "shop::nested",
                None,
                &Payload::encode(&(nested, 1.5f64)).unwrap(),
            ),
        ),
    ]
}

#[test]
fn every_event_kind_encodes_to_its_golden_bytes() {
    let actual: Vec<(&str, String)> = events()
        .into_iter()
        .map(|(name, e)| (name, hex(&e.encode().unwrap())))
        .collect();
    assert_eq!(actual.len(), GOLDEN_EVENTS.len());
    for ((name, got), (gname, want)) in actual.iter().zip(GOLDEN_EVENTS) {
        assert_eq!(name, gname);
        assert_eq!(got, want, "encoding of {name} changed");
    }
    // And the golden bytes still decode to the same events.
    for ((_, event), (_, want)) in events().into_iter().zip(GOLDEN_EVENTS) {
        let bytes: Vec<u8> = (0..want.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&want[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(Event::decode(&bytes).unwrap(), event);
    }
}

#[test]
fn call_keys_of_known_arguments_are_stable() {
    let actual: Vec<(&str, String)> = known_keys()
        .into_iter()
        .map(|(n, k)| (n, k.to_hex()))
        .collect();
    assert_eq!(actual.len(), GOLDEN_KEYS.len());
    for ((name, got), (gname, want)) in actual.iter().zip(GOLDEN_KEYS) {
        assert_eq!(name, gname);
        assert_eq!(got, want, "call key {name} changed");
    }
}

/// Context writes beyond the one `events()` pins (`ContextWrite` is an enum
/// inside one event kind; each variant is its own wire shape).
fn context_writes() -> Vec<(&'static str, ContextWrite)> {
    vec![
        (
            "counter_add",
            ContextWrite::CounterAdd {
                name: "done".into(),
                by: 1.0,
            },
        ),
        (
            "counter_default",
            ContextWrite::CounterDefault {
                name: "progress".into(),
                value: 0.5,
            },
        ),
        (
            "state_default",
            ContextWrite::StateDefault {
                key: "phase".into(),
                value: Payload::encode(&"start").unwrap(),
            },
        ),
    ]
}

const GOLDEN_CONTEXT_WRITES: &[(&str, &str)] = &[
    (
        "counter_add",
        "a36162a1657772697465a16b636f756e7465725f616464a2626279f93c00646e616d6564646f6e65616b6d636f6e746578745f7772697465617601",
    ),
    (
        "counter_default",
        "a36162a1657772697465a16f636f756e7465725f64656661756c74a2646e616d656870726f67726573736576616c7565f93800616b6d636f6e746578745f7772697465617601",
    ),
    (
        "state_default",
        "a36162a1657772697465a16d73746174655f64656661756c74a2636b65796570686173656576616c756546657374617274616b6d636f6e746578745f7772697465617601",
    ),
];

#[test]
fn every_context_write_encodes_to_its_golden_bytes() {
    assert_eq!(context_writes().len(), GOLDEN_CONTEXT_WRITES.len());
    for ((name, write), (gname, want)) in context_writes().into_iter().zip(GOLDEN_CONTEXT_WRITES) {
        assert_eq!(name, *gname);
        let event = Event::ContextWrite { write };
        let got = hex(&event.encode().unwrap());
        assert_eq!(got, *want, "encoding of context write {name} changed");
        let bytes: Vec<u8> = (0..want.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&want[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(Event::decode(&bytes).unwrap(), event);
    }
}
