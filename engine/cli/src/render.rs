//! Turning stored values into text and JSON: CBOR payloads shown generically
//! (no user types needed), events, times, tables and colors.

use serde_json::{Value as Json, json};
use stent::journal::event::{ContextWrite, Event, ParentLink};
use stent::journal::{Failure, Payload, Timestamp};

/// A payload decoded generically; an undecodable one becomes a string that
/// says so (the bytes are never trusted to be well-formed).
pub fn payload_json(payload: &Payload) -> Json {
    match payload.to_json() {
        Ok(v) => v,
        Err(e) => Json::String(format!("<{} undecodable bytes: {e}>", payload.len())),
    }
}

/// A payload as one line of JSON-like text, cut to `max` characters.
pub fn payload_text(payload: &Payload, max: usize) -> String {
    cut(&payload_json(payload).to_string(), max)
}

/// `text` cut to `max` characters, with `…` when something was left out,
/// its control characters made visible ([`escape_controls`]): what it
/// shows may come from anyone (a panic message, a payload).
pub fn cut(text: &str, max: usize) -> String {
    let text = escape_controls(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `text` cut to `max` characters from the left, keeping its end (the
/// distinctive part of a path-like name: `…workflows::fulfil_order`), its
/// control characters made visible.
///
/// ```
/// assert_eq!(stent_cli::render::cut_tail("app::workflows::fulfil", 12), "…ows::fulfil");
/// assert_eq!(stent_cli::render::cut_tail("app::f", 12), "app::f");
/// ```
pub fn cut_tail(text: &str, max: usize) -> String {
    let text = escape_controls(text);
    let len = text.chars().count();
    if len <= max {
        return text;
    }
    let keep = max.saturating_sub(1);
    let mut s = String::from("…");
    s.extend(text.chars().skip(len - keep));
    s
}

/// `text` with every control character (terminal escape sequences, line
/// breaks, bells) written as a visible escape (`\x1b`, `\n`), so a string
/// stored by anyone cannot move the cursor, recolour or clear a terminal
/// that shows it.
///
/// ```
/// assert_eq!(stent_cli::render::escape_controls("a\x1b[2Jb\n"), "a\\x1b[2Jb\\n");
/// ```
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A failure as JSON: `{"kind": "error", "error": <value>}`, or
/// `{"kind": "panic" | "aborted", "message": ...}`.
pub fn failure_json(failure: &Failure) -> Json {
    match failure {
        Failure::Error { error } => json!({"kind": "error", "error": payload_json(error)}),
        Failure::Panic { message } => json!({"kind": "panic", "message": message}),
        Failure::Aborted { message } => json!({"kind": "aborted", "message": message}),
    }
}

/// A failure as one line of text, cut to `max` characters.
pub fn failure_text(failure: &Failure, max: usize) -> String {
    match failure {
        Failure::Error { error } => format!("error {}", payload_text(error, max)),
        Failure::Panic { message } => format!("panic: {}", cut(message, max)),
        Failure::Aborted { message } => format!("aborted: {}", cut(message, max)),
    }
}

fn parent_json(parent: &Option<ParentLink>) -> Json {
    match parent {
        Some(p) => json!({"invocation": p.invocation.to_string(), "seq": p.seq.0}),
        None => Json::Null,
    }
}

/// Every field of an event, decoded.
pub fn event_json(event: &Event) -> Json {
    match event {
        Event::Started {
            function,
            version,
            args,
            parent,
            forked_from,
        } => json!({
            "function": function, "version": version, "args": payload_json(args),
            "parent": parent_json(parent),
            "forked_from": forked_from.map(|f| json!({
                "execution": f.execution.to_string(), "at": f.at.0,
            })),
        }),
        Event::CallScheduled {
            function,
            version,
            call_key,
            args,
            child,
        } => json!({
            "function": function, "version": version, "call_key": call_key.to_string(),
            "args": payload_json(args), "child": child.to_string(),
        }),
        Event::CallCompleted { scheduled, value } => {
            json!({"scheduled": scheduled.0, "value": payload_json(value)})
        }
        Event::CallFailed { scheduled, failure } => {
            json!({"scheduled": scheduled.0, "failure": failure_json(failure)})
        }
        Event::CacheHit {
            call_key,
            function,
            version,
            value,
        } => json!({
            "call_key": call_key.to_string(), "function": function, "version": version,
            "value": payload_json(value),
        }),
        Event::TimerStarted {
            fire_at,
            duration_ms,
        } => json!({"fire_at": time_json(*fire_at), "duration_ms": duration_ms}),
        Event::TimerFired { started } => json!({"started": started.0}),
        Event::SignalAwaited { name } => json!({"name": name}),
        Event::SignalReceived { awaited, payload } => {
            json!({"awaited": awaited.0, "payload": payload_json(payload)})
        }
        Event::ContextWrite { write } => json!({"write": context_write_json(write)}),
        Event::SideEffect { value } => json!({"value": payload_json(value)}),
        Event::Completed { value } => json!({"value": payload_json(value)}),
        Event::Failed { failure } => json!({"failure": failure_json(failure)}),
        Event::Cancelled { reason } => json!({"reason": reason}),
        Event::TimedOut { deadline } => json!({"deadline": deadline.map(time_json)}),
        Event::PatchMarker { patch } => json!({"patch": patch}),
        _ => json!({}),
    }
}

fn context_write_json(write: &ContextWrite) -> Json {
    match write {
        ContextWrite::CounterAdd { name, by } => json!({"counter_add": {"name": name, "by": by}}),
        ContextWrite::StateSet { key, value } => {
            json!({"state_set": {"key": key, "value": payload_json(value)}})
        }
        ContextWrite::CounterDefault { name, value } => {
            json!({"counter_default": {"name": name, "value": value}})
        }
        ContextWrite::StateDefault { key, value } => {
            json!({"state_default": {"key": key, "value": payload_json(value)}})
        }
        ContextWrite::OnCancel {
            function,
            version,
            args,
        } => {
            json!({"on_cancel": {"function": function, "version": version, "args": payload_json(args)}})
        }
    }
}

/// A context write as short text.
pub fn context_write_text(write: &ContextWrite, max: usize) -> String {
    match write {
        ContextWrite::CounterAdd { name, by } => format!("counter {name} += {}", number(*by)),
        ContextWrite::StateSet { key, value } => {
            format!("state {key} = {}", payload_text(value, max))
        }
        ContextWrite::CounterDefault { name, value } => {
            format!("counter {name} defaults to {}", number(*value))
        }
        ContextWrite::StateDefault { key, value } => {
            format!("state {key} defaults to {}", payload_text(value, max))
        }
        ContextWrite::OnCancel { function, args, .. } => {
            format!("on cancel: {function}{}", payload_text(args, max))
        }
    }
}

/// A counter value: integral ones without a fraction.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A time as RFC 3339 with milliseconds, UTC.
pub fn time_json(t: Timestamp) -> Json {
    Json::String(t.to_string())
}

/// A time for people: `2026-11-26 08:52:43.120`.
pub fn time_text(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A chrono time for people.
pub fn datetime_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A length of time for people: `850ms`, `12.3s`, `4m 05s`, `3h 02m`, `2d 04h`.
pub fn elapsed_text(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else if ms < 86_400_000 {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    } else {
        format!("{}d {:02}h", ms / 86_400_000, (ms / 3_600_000) % 24)
    }
}

/// ANSI styles, applied only when colors are on.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Colors on.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dimmed.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Green.
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Red.
    pub fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Yellow.
    pub fn busy(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Colored by what a state name means.
    pub fn state(self, state: &str) -> String {
        match state {
            "completed" | "done" => self.good(state),
            "failed" | "timed_out" | "dead" | "paused" => self.bad(state),
            "running" | "leased" => self.busy(state),
            "cancelled" => self.dim(state),
            _ => state.to_string(),
        }
    }
}

/// A table with left-aligned columns, two spaces apart. Cells may carry
/// colors: widths are measured without escape sequences.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The lines of the table, the header in bold.
    pub fn render(&self, style: Style) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(visible_len(cell));
            }
        }
        let mut out = String::new();
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let cell = if r == 0 {
                    style.bold(cell)
                } else {
                    cell.clone()
                };
                line.push_str(&cell);
                if !last {
                    let pad = widths[i] - visible_len(row[i].as_str()) + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Characters a terminal shows (ANSI escape sequences left out).
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        if in_escape {
            if c == 'm' {
                in_escape = false;
            }
        } else if c == '\x1b' {
            in_escape = true;
        } else {
            n += 1;
        }
    }
    n
}

/// A progress bar `[#####.....]` of `width` cells.
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_values_become_json() {
        let v =
            Payload::encode(&serde_json::json!({"b": [1, -2, 3.5], "a": "x", "n": null})).unwrap();
        assert_eq!(
            payload_json(&v),
            json!({"a": "x", "b": [1, -2, 3.5], "n": null})
        );
        let bytes = Payload::encode(&serde_bytes_like(&[0xde, 0xad])).unwrap();
        assert_eq!(payload_json(&bytes), json!("h'dead'"));
        let bad = Payload::from_bytes(vec![0xff, 0x00]);
        assert!(payload_json(&bad).as_str().unwrap().contains("undecodable"));
    }

    fn serde_bytes_like(b: &[u8]) -> ciborium::Value {
        ciborium::Value::Bytes(b.to_vec())
    }

    #[test]
    fn cut_and_tables() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xxx".into(), "y".into()]);
        assert_eq!(t.render(Style { color: false }), "A    BB\nxxx  y\n");
        assert_eq!(visible_len("\x1b[1mab\x1b[0m"), 2);
        assert_eq!(bar(1, 4, 8), "[##......]");
        assert_eq!(elapsed_text(1500), "1.5s");
        assert_eq!(number(3.0), "3");
    }
}
