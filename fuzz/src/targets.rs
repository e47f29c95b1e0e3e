//! The bodies of stent's fuzz targets.
//!
//! Each function takes the raw fuzzer input and panics only when a property
//! fails (a panic in the code under test, or a broken invariant). The
//! cargo-fuzz binaries in `fuzz/fuzz_targets/` call them, and so does the
//! stable corpus test (`journal/tests/fuzz_corpus.rs`, through
//! `#[path = "../../fuzz/src/targets.rs"]`), so keep this module's
//! dependencies to stent-journal, stent-replay, ciborium and futures-util.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Waker};
use std::time::Duration;

use ciborium::Value;
use stent_journal::event::{ContextWrite, ParentLink};
use stent_journal::{
    CallKey, CodecError, Event, Failure, InvocationId, Payload, PayloadLimits, Seq, Timestamp,
    format_duration, parse_duration,
};
use stent_replay::{Command, Context, Driver, Outstanding, Resolution, Status};

/// A fuzz target's body: panics only on a finding.
pub type Target = fn(&[u8]);

/// Every target, by name, for the corpus test and the README.
pub const ALL: [(&str, Target); 6] = [
    ("event_decode", event_decode),
    ("cbor_roundtrip", cbor_roundtrip),
    ("call_key_stability", call_key_stability),
    ("duration_parse", duration_parse),
    ("payload_limits", payload_limits),
    ("replay_journal", replay_journal),
];

/// Limits small enough that a fuzzer spends its time on structure, not size.
const FUZZ_LIMITS: PayloadLimits = PayloadLimits::new(64 * 1024, 32);

// ---------------------------------------------------------------------------
// 1. event_decode
// ---------------------------------------------------------------------------

/// `Event::decode` / `decode_with` on arbitrary bytes: a typed error or an
/// event whose encoding is a fixed point (encode → decode → encode gives the
/// same bytes and the same event).
pub fn event_decode(data: &[u8]) {
    let default = Event::decode(data);
    let limited = Event::decode_with(data, FUZZ_LIMITS);
    if let Err(e) = &default {
        // Every error renders without panicking.
        let _ = e.to_string();
    }
    if let Ok(event) = &limited {
        // Tighter limits never accept what the defaults reject.
        let Ok(d) = &default else {
            panic!("accepted under small limits, rejected under defaults: {default:?}");
        };
        assert_eq!(format!("{event:?}"), format!("{d:?}"));
    }
    let Ok(event) = default else { return };
    check_event_fixed_point(&event);
}

/// encode → decode → encode is stable, and the event survives it.
fn check_event_fixed_point(event: &Event) {
    let bytes = event
        .encode()
        .unwrap_or_else(|e| panic!("a decoded event must re-encode: {e}; {event:?}"));
    let again = Event::decode(&bytes)
        .unwrap_or_else(|e| panic!("re-encoded event does not decode: {e}; {event:?}"));
    // Debug instead of `==`: a NaN counter increment is the same event.
    assert_eq!(format!("{event:?}"), format!("{again:?}"));
    assert_eq!(event.kind(), again.kind());
    assert_eq!(event.resolves(), again.resolves());
    assert_eq!(event.call_key(), again.call_key());
    let bytes2 = again.encode().expect("re-encode");
    assert_eq!(bytes, bytes2, "event encoding is not a fixed point");
}

// ---------------------------------------------------------------------------
// 2. cbor_roundtrip
// ---------------------------------------------------------------------------

/// Arbitrary bytes → `Payload::from_bytes(..).to_value()`; when that works,
/// canonical encoding is idempotent: encoding the decoded canonical bytes
/// again yields the same bytes.
pub fn cbor_roundtrip(data: &[u8]) {
    let payload = Payload::from_bytes(data.to_vec());
    let Ok(value) = payload.to_value() else {
        return;
    };
    let _ = format!("{payload:?}");
    let canonical = Payload::encode(&value)
        .unwrap_or_else(|e| panic!("a decoded value must encode: {e}; {value:?}"));
    let value2 = canonical
        .to_value()
        .unwrap_or_else(|e| panic!("canonical bytes must decode: {e}; {value:?}"));
    let canonical2 = Payload::encode(&value2).expect("encode again");
    assert_eq!(
        canonical.as_bytes(),
        canonical2.as_bytes(),
        "canonical encoding is not idempotent for {value:?}"
    );
    // Decoding the canonical bytes under limits tight enough for the value
    // still works: canonicalisation never deepens a value.
    let depth = value_depth(&value2);
    let tight = PayloadLimits::new(canonical.len(), depth);
    if let Err(e) = canonical.decode_with::<Value>(tight) {
        panic!("canonical bytes rejected under their own size/depth {tight:?}: {e}");
    }
}

/// Nesting depth as the decoder counts it: arrays, maps and tags add one.
fn value_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| value_depth(k).max(value_depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tag(_, inner) => 1 + value_depth(inner),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------
// 3. call_key_stability
// ---------------------------------------------------------------------------

/// The value decoded from the input, re-encoded with every map's entries
/// shuffled (seeded by the input), gives the same canonical bytes and the
/// same `CallKey`; a typed round trip through a `HashMap` does too.
pub fn call_key_stability(data: &[u8]) {
    let Ok(value) = Payload::from_bytes(data.to_vec()).decode_with::<Value>(FUZZ_LIMITS) else {
        return;
    };
    let Ok(canonical) = Payload::encode(&value) else {
        panic!("a decoded value must encode: {value:?}");
    };
    let function = "fuzz::call";
    let key = CallKey::new(function, None, &canonical);
    assert_eq!(key, CallKey::new(function, None, &canonical.clone()));
    assert_ne!(key, CallKey::new(function, Some(""), &canonical));

    let mut seed = fnv(data) | 1;
    for round in 0..3 {
        let shuffled = shuffle_maps(value.clone(), &mut seed);
        let reencoded = Payload::encode(&shuffled).expect("shuffled value encodes");
        assert_eq!(
            canonical.as_bytes(),
            reencoded.as_bytes(),
            "map order changed the canonical bytes (round {round}) of {value:?}"
        );
        assert_eq!(key, CallKey::new(function, None, &reencoded));
    }

    // A typed re-encoding: a map with distinct text keys read into a HashMap
    // (random iteration order) and encoded again gives the same key.
    if let Value::Map(entries) = &value {
        let mut seen = std::collections::HashSet::new();
        let distinct_text = entries
            .iter()
            .all(|(k, _)| matches!(k, Value::Text(t) if seen.insert(t.clone())));
        if distinct_text {
            let typed: HashMap<String, Value> = canonical
                .decode()
                .unwrap_or_else(|e| panic!("text-keyed map does not decode as a HashMap: {e}"));
            let typed = Payload::encode(&typed).expect("encode HashMap");
            assert_eq!(canonical.as_bytes(), typed.as_bytes());
            assert_eq!(key, CallKey::new(function, None, &typed));
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The same value with every map's entries in a pseudo-random order.
fn shuffle_maps(v: Value, seed: &mut u64) -> Value {
    match v {
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| shuffle_maps(i, seed)).collect())
        }
        Value::Map(entries) => {
            let mut entries: Vec<(Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (shuffle_maps(k, seed), shuffle_maps(v, seed)))
                .collect();
            for i in (1..entries.len()).rev() {
                let j = (xorshift(seed) % (i as u64 + 1)) as usize;
                entries.swap(i, j);
            }
            Value::Map(entries)
        }
        Value::Tag(t, inner) => Value::Tag(t, Box::new(shuffle_maps(*inner, seed))),
        other => other,
    }
}

// ---------------------------------------------------------------------------
// 4. duration_parse
// ---------------------------------------------------------------------------

/// `parse_duration` on arbitrary strings never panics; an accepted string is
/// pure grammar and re-formats to the same duration; formatting any whole
/// number of seconds parses back.
pub fn duration_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_duration(&text) {
        Ok(d) => {
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_digit() || b"wdhms".contains(&b)),
                "accepted {text:?}"
            );
            assert_eq!(d.subsec_nanos(), 0);
            let formatted = format_duration(d);
            assert_eq!(
                parse_duration(&formatted),
                Ok(d),
                "{text:?} → {formatted:?}"
            );
            assert_eq!(
                format_duration(parse_duration(&formatted).unwrap()),
                formatted
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if data.len() >= 8 {
        let secs = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let nanos = data.get(8).map_or(0, |b| u32::from(*b) * 3_000_000);
        let d = Duration::new(secs, nanos);
        let formatted = format_duration(d);
        assert_eq!(
            parse_duration(&formatted),
            Ok(Duration::from_secs(secs)),
            "{formatted:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. payload_limits
// ---------------------------------------------------------------------------

/// Decoding under small [`PayloadLimits`]: hostile inputs give an error
/// quickly, without large allocations or deep recursion.
///
/// Input: `[size byte, depth byte, mode, body…]`. Limits are
/// `max_bytes = 1 + size * 16`, `max_depth = depth % 40`. Mode `0xFF` expands
/// the body: `body[0]` repeated 100,000 times, then `body[1..]` (for example
/// `81` → an array nested 100,000 deep), decoded with a 1 MiB size limit so
/// that only the depth limit stands in the way.
pub fn payload_limits(data: &[u8]) {
    let [size, depth, mode, body @ ..] = data else {
        return;
    };
    let mut limits = PayloadLimits::new(1 + usize::from(*size) * 16, usize::from(*depth) % 40);
    let expanded;
    let body: &[u8] = if *mode == 0xFF && !body.is_empty() {
        let mut v = vec![body[0]; 100_000];
        v.extend_from_slice(&body[1..]);
        expanded = v;
        limits.max_bytes = 1 << 20;
        &expanded
    } else {
        body
    };
    let payload = Payload::from_bytes(body.to_vec());

    let check = |r: Result<(), CodecError>| {
        if body.len() > limits.max_bytes {
            assert_eq!(
                r,
                Err(CodecError::TooLarge {
                    size: body.len(),
                    limit: limits.max_bytes
                })
            );
        }
    };

    match payload.decode_with::<Value>(limits) {
        Ok(v) => {
            assert!(body.len() <= limits.max_bytes);
            let depth = value_depth(&v);
            assert!(depth <= limits.max_depth, "depth {depth} under {limits:?}");
        }
        Err(e) => check(Err(e)),
    }
    check(payload.decode_with::<Vec<Vec<u8>>>(limits).map(drop));
    check(
        payload
            .decode_with::<(String, u64, Vec<u8>)>(limits)
            .map(drop),
    );
    check(
        payload
            .decode_with::<HashMap<String, Vec<Value>>>(limits)
            .map(drop),
    );
    check(
        payload
            .decode_with::<Vec<Option<Box<Value>>>>(limits)
            .map(drop),
    );
    check(Event::decode_with(body, limits).map(drop));
    // The defaults (16 MiB, depth 128) must be safe for hostile input too.
    if let Ok(v) = payload.to_value() {
        let _ = Payload::encode(&v).expect("decoded value encodes");
    }
    let _ = Event::decode(body);
}

// ---------------------------------------------------------------------------
// 6. replay_journal
// ---------------------------------------------------------------------------

const STEP: &str = "fuzz::step";

fn step_args(n: u8) -> Payload {
    Payload::encode(&(n,)).expect("encode args")
}

/// The invocation id the replay target runs under.
pub fn invocation() -> InvocationId {
    "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        .parse()
        .expect("valid uuid")
}

/// The `Started` event of the replay target's workflow.
pub fn started() -> Event {
    Event::Started {
        function: "fuzz::wf".into(),
        version: None,
        args: Payload::encode(&()).expect("encode unit"),
        parent: None,
        forked_from: None,
    }
}

async fn step(ctx: &Context, n: u8) -> Result<u64, Failure> {
    let r = ctx.schedule(Command::call(STEP, None, step_args(n))).await;
    expect_u64(ctx, r)
}

fn expect_u64(ctx: &Context, r: Resolution) -> Result<u64, Failure> {
    match r {
        Resolution::Value(p) => p.decode::<u64>().map_err(|e| {
            let message = format!("recorded value is not a u64: {e}");
            ctx.abort(message.clone());
            Failure::Aborted { message }
        }),
        Resolution::Failed(f) => Err(f),
        Resolution::Done => {
            let message = "expected a value, the journal recorded none".to_string();
            ctx.abort(message.clone());
            Err(Failure::Aborted { message })
        }
    }
}

/// The fixed workflow: a call, a side effect, a counter, two calls in
/// parallel, a timer, then a signal raced against a timeout.
pub fn workflow() -> Pin<Box<dyn Future<Output = Result<Payload, Failure>> + Send>> {
    Box::pin(async {
        let Some(ctx) = Context::current() else {
            return Err(Failure::Aborted {
                message: "no context".into(),
            });
        };
        let a = step(&ctx, 1).await?;
        let noise = ctx
            .schedule(Command::SideEffect {
                value: Payload::encode(&7u64).expect("encode"),
            })
            .await;
        let b = expect_u64(&ctx, noise)?;
        ctx.schedule(Command::ContextWrite(ContextWrite::CounterAdd {
            name: "steps".into(),
            by: 1.0,
        }))
        .await;
        let (c, d) = futures_util::future::join(step(&ctx, 2), step(&ctx, 3)).await;
        let (c, d) = (c?, d?);
        ctx.schedule(Command::Timer {
            duration: Duration::from_secs(5),
        })
        .await;
        let signal = ctx.schedule(Command::Signal { name: "go".into() });
        let timeout = ctx.schedule(Command::Timer {
            duration: Duration::from_secs(60),
        });
        let e = match futures_util::future::select(signal, timeout).await {
            futures_util::future::Either::Left((r, _)) => expect_u64(&ctx, r)?,
            futures_util::future::Either::Right(_) => 0,
        };
        let total = a
            .wrapping_add(b)
            .wrapping_add(c.wrapping_mul(3))
            .wrapping_add(d)
            .wrapping_add(e);
        Payload::encode(&total).map_err(|e| Failure::Aborted {
            message: e.to_string(),
        })
    })
}

/// Builds one event from a few input bytes, biased towards events that fit
/// the workflow (right call keys, small seqs, u64 values).
fn event_from(bytes: &mut std::slice::Iter<'_, u8>) -> Option<Event> {
    let op = *bytes.next()?;
    let mut arg = || bytes.next().copied().unwrap_or(0);
    let value = |b: u8| match b % 8 {
        0 => Payload::from_bytes(vec![b]), // a small CBOR integer
        1 => Payload::encode(&"text").expect("encode"),
        2 => Payload::from_bytes(vec![0x1b, b]), // truncated
        _ => Payload::encode(&u64::from(b)).expect("encode"),
    };
    Some(match op % 16 {
        0 => started(),
        1 | 2 => {
            let n = arg() % 5;
            let args = step_args(n);
            let seq = Seq(u32::from(arg() % 16));
            Event::CallScheduled {
                function: STEP.into(),
                version: None,
                call_key: CallKey::new(STEP, None, &args),
                args,
                child: InvocationId::child_of(invocation(), seq),
            }
        }
        3 | 4 => Event::CallCompleted {
            scheduled: Seq(u32::from(arg() % 16)),
            value: value(arg()),
        },
        5 => Event::CallFailed {
            scheduled: Seq(u32::from(arg() % 16)),
            failure: Failure::Error {
                error: value(arg()),
            },
        },
        6 => {
            let n = arg() % 5;
            Event::CacheHit {
                call_key: CallKey::new(STEP, None, &step_args(n)),
                function: (n % 2 == 0).then(|| STEP.to_string()),
                version: None,
                value: value(arg()),
            }
        }
        7 => Event::TimerStarted {
            fire_at: Timestamp(i64::from(arg()) * 1000),
            duration_ms: u64::from(arg()) * 1000,
        },
        8 => Event::TimerFired {
            started: Seq(u32::from(arg() % 16)),
        },
        9 => Event::SignalAwaited {
            name: if arg() % 4 == 0 { "stop" } else { "go" }.into(),
        },
        10 => Event::SignalReceived {
            awaited: Seq(u32::from(arg() % 16)),
            payload: value(arg()),
        },
        11 => Event::ContextWrite {
            write: ContextWrite::CounterAdd {
                name: "steps".into(),
                by: f64::from(arg() % 3),
            },
        },
        12 => Event::SideEffect {
            value: value(arg()),
        },
        13 => Event::Completed {
            value: value(arg()),
        },
        14 => Event::Failed {
            failure: Failure::Panic {
                message: "boom".into(),
            },
        },
        _ => match arg() % 3 {
            0 => Event::Cancelled {
                reason: (arg() % 2 == 0).then(|| "fuzz".to_string()),
            },
            1 => Event::TimedOut {
                deadline: (arg() % 2 == 0).then(|| Timestamp(i64::from(arg()))),
            },
            _ => Event::Started {
                function: "fuzz::wf".into(),
                version: Some("v2".into()),
                args: value(arg()),
                parent: Some(ParentLink {
                    invocation: invocation(),
                    seq: Seq(1),
                }),
                forked_from: None,
            },
        },
    })
}

/// How many times the harness advances the driver at most.
const MAX_TURNS: usize = 64;

/// Interprets the input as a journal plus a feed of later resolutions, runs
/// the fixed workflow through `Driver::new` + `advance` + `resolve`, and
/// checks that it ends in a typed status, never a panic; when it finishes
/// or blocks, replaying the journal it produced gives the same status.
///
/// Input: `[header, body…]`. `header & 1 == 0`: the body is records of
/// `[len u8][event bytes]` decoded with `Event::decode_with` (undecodable
/// records are skipped); otherwise it is the compact grammar of
/// `event_from`. The first `header >> 4` events form the stored journal
/// (prefixed with a `Started` unless `header & 2`), the rest are fed to
/// `resolve` one per blocked turn.
pub fn replay_journal(data: &[u8]) {
    let Some((&header, body)) = data.split_first() else {
        return;
    };
    let mut events = Vec::new();
    if header & 1 == 0 {
        let mut rest = body;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            let (record, tail) = tail.split_at(len);
            rest = tail;
            if let Ok(e) = Event::decode_with(record, FUZZ_LIMITS) {
                events.push(e);
            }
        }
    } else {
        let mut it = body.iter();
        while let Some(e) = event_from(&mut it) {
            events.push(e);
            if events.len() > 256 {
                break;
            }
        }
    }
    let stored_len = usize::from(header >> 4).min(events.len());
    let feed = events.split_off(stored_len);
    let mut journal = events;
    if header & 2 == 0 {
        journal.insert(0, started());
    }

    let first = run(journal, feed);
    if let Some((journal, summary)) = first {
        // Replaying what the run produced reaches the same point with no
        // new events.
        let again = run(journal.clone(), Vec::new());
        let Some((journal2, summary2)) = again else {
            panic!("replay of a produced journal was rejected: {journal:?}");
        };
        assert_eq!(summary, summary2, "replay differs for journal {journal:?}");
        assert_eq!(format!("{journal:?}"), format!("{journal2:?}"));
    }
}

/// Runs the workflow; returns the journal and a summary when the run ended
/// `Finished` or `Blocked` with an empty feed (the states a replay must
/// reproduce), `None` for typed stops.
fn run(journal: Vec<Event>, feed: Vec<Event>) -> Option<(Vec<Event>, String)> {
    let stored = journal.len();
    let mut driver = match Driver::new(invocation(), journal, workflow()) {
        Ok(d) => d,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    driver.set_now(Timestamp(1_000));
    let mut cx = TaskCx::from_waker(Waker::noop());
    let mut feed = feed.into_iter();
    for _ in 0..MAX_TURNS {
        let status = driver.advance(&mut cx);
        let _ = driver.take_new_events();
        let _ = driver.pending_new_calls();
        assert!(driver.journal_len() >= stored.min(1));
        match status {
            Status::Finished(out) => {
                assert!(driver.is_done());
                let summary = format!("finished {out:?}");
                let _ = driver.advance(&mut cx); // a second advance is a typed stop
                return Some((driver.journal(), summary));
            }
            Status::Stopped(e) => {
                let _ = e.to_string();
                return None;
            }
            Status::Behind => {
                let _ = driver.divergence_if_behind().to_string();
                return None;
            }
            Status::Blocked => {
                let outstanding: Vec<(Seq, Outstanding)> = driver.outstanding();
                match feed.next() {
                    Some(event) => {
                        if let Err(e) = driver.resolve(event) {
                            let _ = e.to_string();
                            return None;
                        }
                    }
                    None => {
                        let summary = format!("blocked on {outstanding:?}");
                        return Some((driver.journal(), summary));
                    }
                }
            }
        }
    }
    None
}
