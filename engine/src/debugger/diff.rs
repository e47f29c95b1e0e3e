//! Field-level differences between two decoded CBOR values, and the short
//! JSON-like rendering of values and events used in reports.

use ciborium::Value;
use stent_journal::event::ContextWrite;
use stent_journal::{Event, Failure, Payload, Seq};

/// Diffs stop after this many fields, so a wholly different value stays readable.
const MAX_DIFFS: usize = 50;

pub use stent_journal::pause::FieldDiff;

/// The fields that differ between two payloads, with paths below `root`:
/// what a divergence report shows for arguments that changed.
///
/// Arrays are compared by index, maps by key, tags by their content; any
/// other difference is reported at the path where it is found. A payload
/// that does not decode is compared as its bytes.
///
/// ```
/// use stent::Payload;
/// use stent::debugger::diff_values;
///
/// #[derive(serde::Serialize)]
/// struct Item { sku: &'static str, qty: u32 }
///
/// let recorded = Payload::encode(&(vec![Item { sku: "a", qty: 3 }],)).unwrap();
/// let asked = Payload::encode(&(vec![Item { sku: "a", qty: 4 }],)).unwrap();
/// let diffs = diff_values("args", &recorded, &asked);
/// assert_eq!(diffs[0].to_string(), "args[0][0].qty: 3 -> 4");
/// ```
pub fn diff_values(root: &str, recorded: &Payload, asked: &Payload) -> Vec<FieldDiff> {
    diff_cbor(root, &payload_value(recorded), &payload_value(asked))
}

/// [`diff_values`] on decoded values.
pub(crate) fn diff_cbor(root: &str, recorded: &Value, asked: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    diff_into(root.to_string(), recorded, asked, &mut out);
    out
}

fn diff_into(path: String, a: &Value, b: &Value, out: &mut Vec<FieldDiff>) {
    if out.len() >= MAX_DIFFS || a == b {
        return;
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(l), Some(r)) => diff_into(p, l, r, out),
                    (l, r) => push(out, p, l, r),
                }
            }
        }
        (Value::Map(x), Value::Map(y)) => {
            for (k, l) in x {
                let p = key_path(&path, k);
                match y.iter().find(|(k2, _)| k2 == k) {
                    Some((_, r)) => diff_into(p, l, r, out),
                    None => push(out, p, Some(l), None),
                }
            }
            for (k, r) in y {
                if !x.iter().any(|(k2, _)| k2 == k) {
                    push(out, key_path(&path, k), None, Some(r));
                }
            }
        }
        (Value::Tag(t1, l), Value::Tag(t2, r)) if t1 == t2 => diff_into(path, l, r, out),
        _ => push(out, path, Some(a), Some(b)),
    }
}

fn push(out: &mut Vec<FieldDiff>, path: String, a: Option<&Value>, b: Option<&Value>) {
    if out.len() < MAX_DIFFS {
        out.push(FieldDiff {
            path,
            recorded: a.map(|v| render_cbor(v, 120)),
            asked: b.map(|v| render_cbor(v, 120)),
        });
    }
}

fn key_path(path: &str, key: &Value) -> String {
    match key {
        Value::Text(t)
            if !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !t.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            format!("{path}.{t}")
        }
        other => format!("{path}[{}]", render_cbor(other, 60)),
    }
}

/// A payload as JSON-like text: text quoted, byte strings as `h'…'`, cut
/// to about `max` characters with `…` (a payload that does not decode
/// shows as its bytes).
///
/// ```
/// use stent::Payload;
/// let v = Payload::encode(&("ok", vec![1, 2])).unwrap();
/// assert_eq!(stent::debugger::render_value(&v, 80), r#"["ok", [1, 2]]"#);
/// ```
pub fn render_value(value: &Payload, max: usize) -> String {
    render_cbor(&payload_value(value), max)
}

/// [`render_value`] of a decoded value.
pub(crate) fn render_cbor(value: &Value, max: usize) -> String {
    let mut s = String::new();
    write_value(&mut s, value, max.saturating_add(1));
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn write_value(s: &mut String, v: &Value, budget: usize) {
    if s.len() > budget {
        return;
    }
    match v {
        Value::Integer(i) => s.push_str(&i128::from(*i).to_string()),
        Value::Float(f) => s.push_str(&f.to_string()),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Null => s.push_str("null"),
        Value::Text(t) => s.push_str(&format!("{t:?}")),
        Value::Bytes(b) => {
            s.push_str("h'");
            for byte in b.iter().take(budget) {
                s.push_str(&format!("{byte:02x}"));
            }
            s.push('\'');
        }
        Value::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_value(s, item, budget);
                if s.len() > budget {
                    break;
                }
            }
            s.push(']');
        }
        Value::Map(entries) => {
            s.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                match k {
                    Value::Text(t) => s.push_str(t),
                    other => write_value(s, other, budget),
                }
                s.push_str(": ");
                write_value(s, val, budget);
                if s.len() > budget {
                    break;
                }
            }
            s.push('}');
        }
        Value::Tag(t, inner) => {
            s.push_str(&format!("tag({t}, "));
            write_value(s, inner, budget);
            s.push(')');
        }
        _ => s.push('?'),
    }
}

/// A payload decoded to a value (an undecodable one as its raw bytes).
pub(crate) fn payload_value(p: &Payload) -> Value {
    p.to_value()
        .unwrap_or_else(|_| Value::Bytes(p.as_bytes().to_vec()))
}

fn failure_value(f: &Failure) -> Value {
    match f {
        Failure::Error { error } => {
            Value::Map(vec![(Value::Text("error".into()), payload_value(error))])
        }
        Failure::Panic { message } => Value::Map(vec![(
            Value::Text("panic".into()),
            Value::Text(message.clone()),
        )]),
        Failure::Aborted { message } => Value::Map(vec![(
            Value::Text("aborted".into()),
            Value::Text(message.clone()),
        )]),
    }
}

fn write_value_of(w: &ContextWrite) -> Value {
    let text = |s: &str| Value::Text(s.to_string());
    let float = |x: f64| Value::Float(x);
    match w {
        ContextWrite::CounterAdd { name, by } => Value::Map(vec![
            (text("counter_add"), text(name)),
            (text("by"), float(*by)),
        ]),
        ContextWrite::CounterDefault { name, value } => Value::Map(vec![
            (text("counter_default"), text(name)),
            (text("value"), float(*value)),
        ]),
        ContextWrite::StateSet { key, value } => Value::Map(vec![
            (text("state_set"), text(key)),
            (text("value"), payload_value(value)),
        ]),
        ContextWrite::StateDefault { key, value } => Value::Map(vec![
            (text("state_default"), text(key)),
            (text("value"), payload_value(value)),
        ]),
        ContextWrite::OnCancel {
            function,
            version,
            args,
        } => Value::Map(vec![
            (text("on_cancel"), text(function)),
            (
                text("version"),
                version.as_deref().map(text).unwrap_or(Value::Null),
            ),
            (text("args"), payload_value(args)),
        ]),
        #[allow(unreachable_patterns)] // the enum may grow
        _ => text("context write"),
    }
}

/// The fields that differ between a recorded event and the one the code asked for.
pub(crate) fn diff_events(recorded: &Event, asked: &Event) -> Vec<FieldDiff> {
    let field = |path: &str, a: String, b: String| FieldDiff {
        path: path.to_string(),
        recorded: Some(a),
        asked: Some(b),
    };
    match (recorded, asked) {
        (
            Event::CallScheduled {
                function: f1,
                version: v1,
                args: a1,
                ..
            },
            Event::CallScheduled {
                function: f2,
                version: v2,
                args: a2,
                ..
            },
        ) => {
            let mut out = Vec::new();
            if f1 != f2 {
                out.push(field("function", f1.clone(), f2.clone()));
            }
            if v1 != v2 {
                out.push(field("version", format!("{v1:?}"), format!("{v2:?}")));
            }
            out.extend(diff_values("args", a1, a2));
            out
        }
        (Event::CacheHit { call_key: k1, .. }, Event::CallScheduled { call_key: k2, .. }) => {
            vec![field("call_key", k1.short(), k2.short())]
        }
        (Event::SignalAwaited { name: n1 }, Event::SignalAwaited { name: n2 }) => {
            vec![field("name", format!("{n1:?}"), format!("{n2:?}"))]
        }
        (Event::ContextWrite { write: w1 }, Event::ContextWrite { write: w2 }) => {
            diff_cbor("write", &write_value_of(w1), &write_value_of(w2))
        }
        (Event::Completed { value: a }, Event::Completed { value: b }) => {
            diff_values("result", a, b)
        }
        (Event::Failed { failure: a }, Event::Failed { failure: b }) => {
            diff_cbor("failure", &failure_value(a), &failure_value(b))
        }
        (Event::Completed { value }, Event::Failed { failure }) => vec![field(
            "result",
            format!("Ok({})", render_value(value, 120)),
            format!("Err({})", render_cbor(&failure_value(failure), 120)),
        )],
        (Event::Failed { failure }, Event::Completed { value }) => vec![field(
            "result",
            format!("Err({})", render_cbor(&failure_value(failure), 120)),
            format!("Ok({})", render_value(value, 120)),
        )],
        (a, b) if a.kind() != b.kind() => {
            vec![field("kind", a.kind().to_string(), b.kind().to_string())]
        }
        _ => Vec::new(),
    }
}

/// One line describing an event: kind, function, decoded arguments or value.
///
/// ```
/// use stent::journal::{Event, Payload};
/// let e = Event::Completed { value: Payload::encode(&"ok").unwrap() };
/// assert_eq!(stent::debugger::describe_event(&e, 80), r#"completed "ok""#);
/// ```
pub fn describe_event(event: &Event, max: usize) -> String {
    match event {
        Event::Started { function, args, .. } => {
            format!("started {function}{}", render_args(args, max))
        }
        Event::CallScheduled {
            function,
            call_key,
            args,
            ..
        } => format!(
            "call_scheduled {function}{} [key {}]",
            render_args(args, max),
            call_key.short()
        ),
        Event::CallCompleted { scheduled, value } => format!(
            "call_completed (seq {scheduled}) {}",
            render_value(value, max)
        ),
        Event::CallFailed { scheduled, failure } => format!(
            "call_failed (seq {scheduled}) {}",
            render_cbor(&failure_value(failure), max)
        ),
        Event::CacheHit {
            call_key,
            function,
            value,
            ..
        } => format!(
            "cache_hit {}[key {}] {}",
            function
                .as_deref()
                .map(|f| format!("{f} "))
                .unwrap_or_default(),
            call_key.short(),
            render_value(value, max)
        ),
        Event::Cancelled { reason } => match reason {
            Some(reason) => format!("cancelled ({reason})"),
            None => "cancelled".to_string(),
        },
        Event::TimedOut { deadline } => match deadline {
            Some(d) => format!("timed_out (deadline {})", d.to_datetime().to_rfc3339()),
            None => "timed_out".to_string(),
        },
        Event::TimerStarted { duration_ms, .. } => {
            format!(
                "timer_started {}",
                stent_journal::format_duration(std::time::Duration::from_millis(*duration_ms))
            )
        }
        Event::TimerFired { started } => format!("timer_fired (seq {started})"),
        Event::SignalAwaited { name } => format!("signal_awaited {name:?}"),
        Event::SignalReceived { awaited, payload } => format!(
            "signal_received (seq {awaited}) {}",
            render_value(payload, max)
        ),
        Event::ContextWrite { write } => {
            format!("context_write {}", render_cbor(&write_value_of(write), max))
        }
        Event::SideEffect { value } => format!("side_effect {}", render_value(value, max)),
        Event::PatchMarker { patch } => format!("patch_marker {patch:?}"),
        Event::Completed { value } => format!("completed {}", render_value(value, max)),
        Event::Failed { failure } => {
            format!("failed {}", render_cbor(&failure_value(failure), max))
        }
        other => other.kind().to_string(),
    }
}

/// Every field of an event, in full: `(name, value)` pairs for the
/// stepping session's `p`(rint).
pub(crate) fn event_fields(event: &Event) -> Vec<(&'static str, String)> {
    const FULL: usize = 1 << 20;
    let mut out = vec![("kind", event.kind().to_string())];
    match event {
        Event::Started {
            function,
            version,
            args,
            parent,
            forked_from,
        } => {
            out.push(("function", function.clone()));
            out.push(("version", format!("{version:?}")));
            out.push(("args", render_value(args, FULL)));
            if let Some(p) = parent {
                out.push(("parent", format!("{} seq {}", p.invocation, p.seq)));
            }
            if let Some(f) = forked_from {
                out.push(("forked_from", format!("{} at seq {}", f.execution, f.at)));
            }
        }
        Event::CallScheduled {
            function,
            version,
            call_key,
            args,
            child,
        } => {
            out.push(("function", function.clone()));
            out.push(("version", format!("{version:?}")));
            out.push(("args", render_value(args, FULL)));
            out.push(("call_key", call_key.to_hex()));
            out.push(("child", child.to_string()));
        }
        Event::CallCompleted { scheduled, value } => {
            out.push(("scheduled", scheduled.to_string()));
            out.push(("value", render_value(value, FULL)));
        }
        Event::CallFailed { scheduled, failure } => {
            out.push(("scheduled", scheduled.to_string()));
            out.push(("failure", render_cbor(&failure_value(failure), FULL)));
        }
        Event::CacheHit {
            call_key,
            function,
            version,
            value,
        } => {
            if let Some(f) = function {
                out.push(("function", f.clone()));
            }
            if let Some(v) = version {
                out.push(("version", format!("{v:?}")));
            }
            out.push(("call_key", call_key.to_hex()));
            out.push(("value", render_value(value, FULL)));
        }
        Event::TimerStarted {
            fire_at,
            duration_ms,
        } => {
            out.push(("fire_at", fire_at.to_datetime().to_rfc3339()));
            out.push(("duration_ms", duration_ms.to_string()));
        }
        Event::TimerFired { started } => out.push(("started", started.to_string())),
        Event::SignalAwaited { name } => out.push(("name", format!("{name:?}"))),
        Event::SignalReceived { awaited, payload } => {
            out.push(("awaited", awaited.to_string()));
            out.push(("payload", render_value(payload, FULL)));
        }
        Event::ContextWrite { write } => {
            out.push(("write", render_cbor(&write_value_of(write), FULL)))
        }
        Event::SideEffect { value } | Event::Completed { value } => {
            out.push(("value", render_value(value, FULL)))
        }
        Event::Failed { failure } => {
            out.push(("failure", render_cbor(&failure_value(failure), FULL)))
        }
        Event::Cancelled { reason: Some(r) } => out.push(("reason", r.clone())),
        Event::PatchMarker { patch } => out.push(("patch", format!("{patch:?}"))),
        Event::TimedOut { deadline: Some(d) } => {
            out.push(("deadline", d.to_datetime().to_rfc3339()))
        }
        _ => {}
    }
    out
}

/// Arguments as `(a, b)`: a tuple's items, or the value itself.
fn render_args(args: &Payload, max: usize) -> String {
    match payload_value(args) {
        Value::Array(items) => {
            let inner = render_cbor(&Value::Array(items), max);
            format!(
                "({})",
                inner
                    .strip_prefix('[')
                    .and_then(|s| s.strip_suffix(']'))
                    .unwrap_or(&inner)
            )
        }
        other => format!("({})", render_cbor(&other, max)),
    }
}

/// Where, after `seq`, the journal recorded the effect the code `asked` for
/// at `seq` (the same call key, signal name or timer): the code made its
/// effects in another order than the journal, or no longer makes the one
/// recorded at `seq`. `None` when `asked` is not recorded later, or the
/// journal holds the same effect at `seq` (a mismatch of values, not of order).
pub(crate) fn reordered_at(journal: &[Event], seq: Seq, asked: &Event) -> Option<Seq> {
    let same = |recorded: &Event| match (asked, recorded) {
        (
            Event::CallScheduled { call_key: a, .. } | Event::CacheHit { call_key: a, .. },
            Event::CallScheduled { call_key: r, .. } | Event::CacheHit { call_key: r, .. },
        ) => a == r,
        (Event::SignalAwaited { name: a }, Event::SignalAwaited { name: r }) => a == r,
        (
            Event::TimerStarted { duration_ms: a, .. },
            Event::TimerStarted { duration_ms: r, .. },
        ) => a == r,
        _ => false,
    };
    let here = journal.get(seq.0 as usize)?;
    if same(here) || here.kind().is_terminal() {
        return None;
    }
    journal
        .iter()
        .enumerate()
        .skip(seq.0 as usize + 1)
        .find(|(_, e)| same(e))
        .and_then(|(i, _)| u32::try_from(i).ok().map(Seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_name_the_field() {
        #[derive(serde::Serialize)]
        struct Item {
            qty: u32,
        }
        #[derive(serde::Serialize)]
        struct Order {
            items: Vec<Item>,
        }
        let a = Value::serialized(&(Order {
            items: vec![Item { qty: 1 }, Item { qty: 2 }, Item { qty: 3 }],
        },))
        .unwrap();
        let b = Value::serialized(&(Order {
            items: vec![Item { qty: 1 }, Item { qty: 2 }, Item { qty: 4 }],
        },))
        .unwrap();
        let d = diff_cbor("args", &a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "args[0].items[2].qty: 3 -> 4");
    }

    #[test]
    fn added_and_removed_fields_are_shown() {
        let a = Value::serialized(&vec![1, 2]).unwrap();
        let b = Value::serialized(&vec![1]).unwrap();
        assert_eq!(diff_cbor("x", &a, &b)[0].to_string(), "x[1]: 2 -> (absent)");
        let m1 = Value::Map(vec![(Value::Text("a b".into()), Value::Null)]);
        let m2 = Value::Map(vec![]);
        assert_eq!(
            diff_cbor("m", &m1, &m2)[0].to_string(),
            r#"m["a b"]: null -> (absent)"#
        );
    }

    #[test]
    fn payloads_are_diffed_and_rendered_and_undecodable_ones_shown_as_bytes() {
        let a = Payload::encode(&("ada", 3)).unwrap();
        let b = Payload::encode(&("ada", 4)).unwrap();
        assert_eq!(
            diff_values("args", &a, &b)[0].to_string(),
            "args[1]: 3 -> 4"
        );
        assert_eq!(render_value(&a, 80), r#"["ada", 3]"#);
        let broken = Payload::from_bytes(vec![0xff, 0x00]);
        assert_eq!(render_value(&broken, 80), "h'ff00'");
        assert_eq!(
            diff_values("args", &a, &broken)[0].to_string(),
            r#"args: ["ada", 3] -> h'ff00'"#
        );
    }

    #[test]
    fn long_values_are_cut() {
        let v = Value::Text("x".repeat(500));
        let s = render_cbor(&v, 20);
        assert_eq!(s.chars().count(), 20);
        assert!(s.ends_with('…'));
    }
}
