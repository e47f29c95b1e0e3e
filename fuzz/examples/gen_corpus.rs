//! Writes the committed seed corpus: `cargo run --example gen_corpus` from
//! `fuzz/` (a normal build, no nightly flags). Files are named by what they
//! hold; existing files (for example crash regressions) are left alone.

use std::path::{Path, PathBuf};
use std::task::{Context as TaskCx, Waker};

use ciborium::Value;
use stent_fuzz::{invocation, started, workflow};
use stent_journal::event::{ContextWrite, ParentLink};
use stent_journal::{CallKey, Event, Failure, InvocationId, Payload, Seq, Timestamp};
use stent_replay::{Driver, Outstanding, Status};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(name), bytes).unwrap();
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

fn envelope(v: Value, k: &str, b: Value) -> Vec<u8> {
    cbor(&Value::Map(vec![
        (text("v"), v),
        (text("k"), text(k)),
        (text("b"), b),
    ]))
}

fn sample_events() -> Vec<(&'static str, Event)> {
    let args = Payload::encode(&(7u32, "x")).unwrap();
    let inv = invocation();
    vec![
        (
            "started",
            Event::Started {
                function: "app::wf".into(),
                version: Some("v1".into()),
                args: args.clone(),
                parent: Some(ParentLink {
                    invocation: inv,
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
                child: InvocationId::child_of(inv, Seq(1)),
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
                failure: Failure::Panic {
                    message: "boom".into(),
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
            "context_write_counter_add",
            Event::ContextWrite {
                write: ContextWrite::CounterAdd {
                    name: "done".into(),
                    by: 1.5,
                },
            },
        ),
        (
            "context_write_state_set",
            Event::ContextWrite {
                write: ContextWrite::StateSet {
                    key: "k".into(),
                    value: Payload::encode(&[1u8, 2, 3]).unwrap(),
                },
            },
        ),
        (
            "context_write_counter_default_nan",
            Event::ContextWrite {
                write: ContextWrite::CounterDefault {
                    name: "n".into(),
                    value: f64::NAN,
                },
            },
        ),
        (
            "context_write_state_default",
            Event::ContextWrite {
                write: ContextWrite::StateDefault {
                    key: "s".into(),
                    value: Payload::encode(&()).unwrap(),
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
            "failed_error",
            Event::Failed {
                failure: Failure::Error {
                    error: Payload::encode(&"bad").unwrap(),
                },
            },
        ),
        (
            "failed_aborted",
            Event::Failed {
                failure: Failure::Aborted {
                    message: "gone".into(),
                },
            },
        ),
        ("cancelled", Event::Cancelled { reason: None }),
        ("timed_out", Event::TimedOut { deadline: None }),
    ]
}

fn event_decode() {
    let t = "event_decode";
    for (name, e) in sample_events() {
        let bytes = e.encode().unwrap();
        put(t, &format!("{name}.cbor"), &bytes);
        if name == "started" || name == "call_scheduled" || name == "signal_received" {
            put(
                t,
                &format!("{name}_truncated.cbor"),
                &bytes[..bytes.len() / 2],
            );
        }
    }
    put(t, "empty", b"");
    put(
        t,
        "version_0.cbor",
        &envelope(int(0), "cancelled", Value::Map(vec![])),
    );
    put(
        t,
        "version_2.cbor",
        &envelope(int(2), "cancelled", Value::Map(vec![])),
    );
    put(
        t,
        "unknown_kind.cbor",
        &envelope(int(1), "teleported", Value::Map(vec![])),
    );
    put(
        t,
        "body_not_a_map.cbor",
        &envelope(int(1), "timer_fired", int(3)),
    );
    put(
        t,
        "body_wrong_field_type.cbor",
        &envelope(
            int(1),
            "timer_fired",
            Value::Map(vec![(text("started"), text("x"))]),
        ),
    );
    put(
        t,
        "payload_as_u8_array.cbor",
        &envelope(
            int(1),
            "completed",
            Value::Map(vec![(text("value"), Value::Array(vec![int(24), int(42)]))]),
        ),
    );
    put(
        t,
        "call_key_31_bytes.cbor",
        &envelope(
            int(1),
            "cache_hit",
            Value::Map(vec![
                (text("call_key"), Value::Bytes(vec![0; 31])),
                (text("value"), Value::Bytes(vec![0xf6])),
            ]),
        ),
    );
    // {"v": 1, "k": "cancelled", "b": {}, "v": 1}: a duplicate field.
    put(
        t,
        "duplicate_field.cbor",
        &[
            0xa4, 0x61, b'v', 1, 0x61, b'k', 0x69, b'c', b'a', b'n', b'c', b'e', b'l', b'l', b'e',
            b'd', 0x61, b'b', 0xa0, 0x61, b'v', 1,
        ],
    );
    // Indefinite-length map and text, tagged version.
    put(
        t,
        "indefinite_lengths.cbor",
        &[
            0xbf, 0x61, b'v', 0xc6, 1, 0x61, b'k', 0x7f, 0x63, b't', b'i', b'm', 0x64, b'e', b'd',
            b'_', b'o', 0x62, b'u', b't', 0xff, 0x61, b'b', 0xbf, 0xff, 0xff,
        ],
    );
    // "v": byte string claiming 2^64-1 bytes.
    put(
        t,
        "huge_length_prefix.cbor",
        &[
            0xa1, 0x61, b'v', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
        ],
    );
    put(
        t,
        "huge_array_prefix.cbor",
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let mut deep = vec![0xa3, 0x61, b'v', 1, 0x61, b'k', 0x69];
    deep.extend_from_slice(b"cancelled");
    deep.extend_from_slice(&[0x61, b'b']);
    deep.extend(std::iter::repeat_n(0x81, 5000));
    deep.push(0);
    put(t, "deep_body.cbor", &deep);
    put(t, "not_cbor", b"{\"v\":1}");
}

fn cbor_values() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("uint_small", vec![0x05]),
        ("uint_non_shortest", vec![0x1b, 0, 0, 0, 0, 0, 0, 0, 5]),
        (
            "uint_max",
            vec![0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "nint_min",
            vec![0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        ("bignum_small", vec![0xc2, 0x42, 0x01, 0x00]),
        ("bignum_17_bytes", [vec![0xc2, 0x51], vec![1; 17]].concat()),
        (
            "bignum_neg_16_bytes",
            [vec![0xc3, 0x50], vec![0xff; 16]].concat(),
        ),
        (
            "bignum_indefinite",
            vec![0xc2, 0x5f, 0x41, 0x01, 0x41, 0x00, 0xff],
        ),
        ("float16_one", vec![0xf9, 0x3c, 0x00]),
        ("float64_one", vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        (
            "float64_nan_payload",
            vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
        ),
        ("float16_nan", vec![0xf9, 0x7e, 0x00]),
        ("float_neg_zero", vec![0xf9, 0x80, 0x00]),
        ("float_inf", vec![0xfa, 0x7f, 0x80, 0, 0]),
        ("text", vec![0x63, b'a', b'b', b'c']),
        ("text_invalid_utf8", vec![0x62, 0xff, 0xfe]),
        ("text_indefinite", vec![0x7f, 0x61, b'a', 0x61, b'b', 0xff]),
        ("bytes_indefinite", vec![0x5f, 0x41, 1, 0x42, 2, 3, 0xff]),
        ("array_nested", vec![0x83, 1, 0x82, 2, 3, 0x81, 0x80]),
        ("array_indefinite", vec![0x9f, 1, 2, 0xff]),
        (
            "map_unsorted",
            vec![0xa3, 0x62, b'a', b'a', 1, 0x61, b'b', 2, 0x61, b'a', 3],
        ),
        (
            "map_mixed_keys",
            vec![0xa4, 0x61, b'a', 1, 0x01, 2, 0x20, 3, 0x80, 4],
        ),
        (
            "map_duplicate_keys",
            vec![0xa2, 0x61, b'a', 1, 0x61, b'a', 2],
        ),
        (
            "map_nested",
            vec![
                0xa2, 0x61, b'z', 0xa2, 0x61, b'y', 1, 0x61, b'x', 2, 0x61, b'a', 0x82, 0xa1, 0x61,
                b'q', 0, 0xa0,
            ],
        ),
        (
            "map_indefinite",
            vec![0xbf, 0x61, b'b', 1, 0x61, b'a', 2, 0xff],
        ),
        ("tag_date", vec![0xc1, 0x1a, 0x51, 0x4b, 0x67, 0xb0]),
        ("tag_nested", vec![0xd8, 0x20, 0xc6, 0x80]),
        ("simple_values", vec![0x84, 0xf4, 0xf5, 0xf6, 0xf7]),
        ("simple_unknown", vec![0xf0]),
        ("break_alone", vec![0xff]),
        ("truncated_array", vec![0x83, 1, 2]),
        ("truncated_uint", vec![0x1a, 0, 1]),
        (
            "huge_text_prefix",
            vec![0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'a'],
        ),
        (
            "huge_map_prefix",
            vec![0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2],
        ),
        ("trailing_bytes", vec![0x01, 0x02]),
        ("empty", vec![]),
    ];
    let mut deep = vec![0x81u8; 2000];
    deep.push(0);
    v.push(("deep_array_2000", deep));
    let mut deep_ok = [0xa1u8, 0x61, b'k'].repeat(20);
    deep_ok.push(0);
    v.push(("deep_map_20", deep_ok));
    v
}

fn cbor_roundtrip() {
    for (name, bytes) in cbor_values() {
        put("cbor_roundtrip", &format!("{name}.cbor"), &bytes);
    }
    for (name, e) in sample_events() {
        if matches!(
            name,
            "started" | "call_scheduled" | "context_write_counter_add"
        ) {
            put(
                "cbor_roundtrip",
                &format!("event_{name}.cbor"),
                &e.encode().unwrap(),
            );
        }
    }
}

fn call_key_stability() {
    for (name, bytes) in cbor_values() {
        if name.starts_with("map")
            || name.starts_with("array")
            || name.starts_with("tag")
            || name == "text"
        {
            put("call_key_stability", &format!("{name}.cbor"), &bytes);
        }
    }
    let args = Value::Array(vec![
        Value::Map((0..12).map(|i| (text(&format!("k{i}")), int(i))).collect()),
        Value::Map(vec![
            (int(10), text("x")),
            (int(-1), text("y")),
            (Value::Bytes(vec![1]), Value::Null),
        ]),
        Value::Map(vec![
            (Value::Array(vec![int(1)]), int(1)),
            (Value::Map(vec![]), int(2)),
        ]),
    ]);
    put(
        "call_key_stability",
        "args_tuple_of_maps.cbor",
        &cbor(&args),
    );
    put(
        "call_key_stability",
        "duplicate_keys_nested.cbor",
        &[0x81, 0xa3, 0x61, b'a', 1, 0x61, b'b', 2, 0x61, b'a', 3],
    );
}

fn duration_parse() {
    let good = [
        "30s",
        "5m",
        "1h30m",
        "2d8h",
        "1w",
        "0s",
        "0w0d0h0m0s",
        "1w2d3h4m5s",
        "00001s",
        "18446744073709551615s",
        "30500568904943w",
    ];
    let bad = [
        "",
        " ",
        "1",
        "h",
        "1h ",
        " 1h",
        "1h 30m",
        "1x",
        "-1s",
        "+1s",
        "1.5h",
        "30m1h",
        "1h1h",
        "1hh",
        "1h30",
        "1H",
        "１h",
        "99999999999999999999w",
        "30500568904944w",
        "18446744073709551616s",
        "1w18446744073709551615s",
        "é",
        "\u{0}",
    ];
    for (i, s) in good.iter().enumerate() {
        put("duration_parse", &format!("good_{i:02}"), s.as_bytes());
    }
    for (i, s) in bad.iter().enumerate() {
        put("duration_parse", &format!("bad_{i:02}"), s.as_bytes());
    }
    put("duration_parse", "secs_u64_max", &[0xff; 9]);
    put("duration_parse", "secs_one_week", &604_800u64.to_le_bytes());
}

fn payload_limits() {
    let t = "payload_limits";
    let limits = |size: u8, depth: u8, body: &[u8]| [vec![size, depth, 0], body.to_vec()].concat();
    let expand = |depth: u8, body: &[u8]| [vec![0, depth, 0xff], body.to_vec()].concat();
    put(t, "deep_array_100k", &expand(8, &[0x81, 0x00]));
    put(t, "deep_map_100k", &expand(8, &[0xa1, 0x00]));
    put(t, "deep_tag_100k", &expand(8, &[0xc6, 0x00]));
    put(t, "deep_indefinite_100k", &expand(8, &[0x9f]));
    put(
        t,
        "many_small_items_100k",
        &[vec![0, 8, 0xff, 0x00], vec![]].concat(),
    );
    put(
        t,
        "huge_bytes_prefix",
        &limits(
            255,
            8,
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0],
        ),
    );
    put(
        t,
        "huge_text_prefix",
        &limits(
            255,
            8,
            &[0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'a'],
        ),
    );
    put(
        t,
        "huge_array_prefix",
        &limits(
            255,
            8,
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0],
        ),
    );
    put(
        t,
        "huge_map_prefix",
        &limits(
            255,
            8,
            &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
        ),
    );
    put(
        t,
        "array_of_huge_bytes",
        &limits(255, 8, &[0x82, 0x5a, 0xff, 0xff, 0xff, 0xff, 0x00, 0x40]),
    );
    put(t, "too_large_for_limit", &limits(0, 8, &[0x83, 1, 2, 3]));
    put(t, "depth_0_scalar", &limits(4, 0, &[0x01]));
    put(t, "depth_0_array", &limits(4, 0, &[0x80]));
    put(t, "depth_2_exact", &limits(4, 2, &[0x81, 0x81, 0x00]));
    put(t, "depth_2_over", &limits(4, 2, &[0x81, 0x81, 0x81, 0x00]));
    put(
        t,
        "tuple_ok",
        &limits(16, 4, &[0x83, 0x61, b'a', 0x01, 0x41, 0x02]),
    );
    put(
        t,
        "map_of_arrays",
        &limits(16, 4, &[0xa1, 0x61, b'a', 0x82, 0x01, 0x80]),
    );
    let event = Event::Cancelled { reason: None }.encode().unwrap();
    put(t, "event_small", &limits(16, 4, &event));
    put(t, "event_too_large", &limits(0, 4, &event));
}

/// Records of `[len][event bytes]` after a header byte.
fn records(header: u8, events: &[Event]) -> Vec<u8> {
    let mut out = vec![header];
    for e in events {
        let b = e.encode().unwrap();
        out.push(u8::try_from(b.len()).expect("event under 256 bytes"));
        out.extend_from_slice(&b);
    }
    out
}

/// The journal of a clean run, answering outstanding effects in seq order.
fn clean_journal() -> Vec<Event> {
    let mut driver = Driver::new(invocation(), vec![started()], workflow()).unwrap();
    driver.set_now(Timestamp(1_000));
    let mut cx = TaskCx::from_waker(Waker::noop());
    loop {
        match driver.advance(&mut cx) {
            Status::Finished(_) => return driver.journal(),
            Status::Blocked => {}
            other => panic!("{other:?}"),
        }
        let (seq, what) = driver.outstanding()[0].clone();
        let event = match what {
            Outstanding::Call { .. } => Event::CallCompleted {
                scheduled: seq,
                value: Payload::encode(&u64::from(seq.0)).unwrap(),
            },
            Outstanding::Timer { .. } => Event::TimerFired { started: seq },
            Outstanding::Signal { .. } => Event::SignalReceived {
                awaited: seq,
                payload: Payload::encode(&9u64).unwrap(),
            },
        };
        driver.resolve(event).unwrap();
    }
}

fn replay_journal() {
    let t = "replay_journal";
    let journal = clean_journal();
    assert!(journal.len() <= 16, "{}", journal.len());
    // Full journal stored (no Started inserted: header bit 1).
    put(
        t,
        "clean_full.rec",
        &records(((journal.len() as u8).min(15) << 4) | 2, &journal),
    );
    // Crash after each prefix: the prefix is stored, later resolutions fed.
    for k in [1usize, 2, 3, 5, 7, 9, 11, 13] {
        let mut evs = journal[..k].to_vec();
        evs.extend(
            journal[k..]
                .iter()
                .filter(|e| e.kind().is_resolution())
                .cloned(),
        );
        put(
            t,
            &format!("crash_after_{k:02}.rec"),
            &records(((k as u8) << 4) | 2, &evs),
        );
    }
    // Only the resolutions, fed from the start (Started inserted).
    let res: Vec<Event> = journal
        .iter()
        .filter(|e| e.kind().is_resolution())
        .cloned()
        .collect();
    put(t, "resolutions_only.rec", &records(0, &res));
    // A value of the wrong type for the first call: the code aborts.
    let mut wrong = journal.clone();
    wrong[2] = Event::CallCompleted {
        scheduled: Seq(1),
        value: Payload::encode(&"text").unwrap(),
    };
    put(
        t,
        "wrong_value_type.rec",
        &records(((wrong.len() as u8).min(15) << 4) | 2, &wrong),
    );
    // The first call failed.
    let mut failed = journal[..2].to_vec();
    failed.push(Event::CallFailed {
        scheduled: Seq(1),
        failure: Failure::Panic {
            message: "x".into(),
        },
    });
    put(t, "first_call_failed.rec", &records(0x32, &failed));
    // A different call at seq 1: divergence.
    let mut div = journal[..1].to_vec();
    let args = Payload::encode(&(4u8,)).unwrap();
    div.push(Event::CallScheduled {
        function: "fuzz::step".into(),
        version: None,
        call_key: CallKey::new("fuzz::step", None, &args),
        args,
        child: InvocationId::child_of(invocation(), Seq(1)),
    });
    put(t, "divergence.rec", &records(0x22, &div));
    // A terminal event where the code asks for its side effect.
    let mut early = journal[..3].to_vec();
    early.push(Event::Cancelled { reason: None });
    put(t, "cancelled_mid_journal.rec", &records(0x42, &early));
    // No Started at seq 0.
    put(
        t,
        "no_started.rec",
        &records(0x12, &[Event::TimedOut { deadline: None }]),
    );
    // Compact grammar (header bit 0): a few hand-made programs.
    put(t, "compact_resolve_first_call.bin", &[0x01, 3, 1, 5]);
    put(t, "compact_cache_hit.bin", &[0x21, 6, 1, 3, 3, 9, 9]);
    put(
        t,
        "compact_mixed.bin",
        &[0x01, 3, 1, 7, 12, 3, 3, 4, 5, 4, 5, 6, 8, 8, 10, 10, 4],
    );
    put(t, "compact_terminal_first.bin", &[0x11, 13, 3, 4]);
    put(t, "empty", &[]);
}

fn main() {
    event_decode();
    cbor_roundtrip();
    call_key_stability();
    duration_parse();
    payload_limits();
    replay_journal();
    for (name, f) in stent_fuzz::ALL {
        let mut n = 0;
        let mut failed = Vec::new();
        for entry in std::fs::read_dir(dir(name)).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                failed.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
            n += 1;
        }
        println!("{name}: {n} files, failing: {failed:?}");
    }
}
