//! The console's pages: the executions list, one execution (summary, what
//! it waits for, its journal as a timeline, actions), dead letters, and
//! the not-found page.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use stent::journal::event::Event;
use stent::journal::store::ExecutionFilter;
use stent::journal::{InvocationId, Payload, Seq, Timestamp};
use stent::{ExecutionId, ExecutionState, ExecutionStatus};

use super::Shared;
use super::view::{Base, error_page, href, json_block, page, state_badge};
use crate::commands::show::execution_json;
use crate::render::{elapsed_text, failure_json, payload_json, time_text};

/// Executions on one page of the list.
const PAGE_SIZE: usize = 50;

/// The embedded stylesheet.
pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
        .into_response()
}

/// The embedded script (confirmations, live updates).
pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
        .into_response()
}

/// Any other path.
pub(crate) async fn not_found(base: Base) -> Response {
    error_page(
        &base,
        StatusCode::NOT_FOUND,
        "not found",
        "There is no page here.",
    )
}

/// The page for a failed database read: the server keeps serving and the
/// next request tries again.
pub(crate) fn database_error(base: &Base, e: &stent::Error) -> Response {
    error_page(
        base,
        StatusCode::SERVICE_UNAVAILABLE,
        "database unavailable",
        &format!("The database could not be read: {e}. This page retries when reloaded."),
    )
}

/// Query of the executions list: every field optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// Only this state.
    #[serde(default)]
    state: String,
    /// Only this function.
    #[serde(default)]
    function: String,
    /// Only this queue.
    #[serde(default)]
    queue: String,
    /// Only this tag.
    #[serde(default)]
    tag: String,
    /// Dispatched at or after (`YYYY-MM-DDTHH:MM`, UTC, or RFC 3339).
    #[serde(default)]
    from: String,
    /// Dispatched before.
    #[serde(default)]
    to: String,
    /// An execution id to open, or the start of ids to list.
    #[serde(default)]
    id: String,
    /// Rows to skip.
    #[serde(default)]
    offset: usize,
}

impl ListQuery {
    /// The query's filters as URL parameters (to keep them across pages).
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("state", self.state.clone()),
            ("function", self.function.trim().to_string()),
            ("queue", self.queue.trim().to_string()),
            ("tag", self.tag.trim().to_string()),
            ("from", self.from.trim().to_string()),
            ("to", self.to.trim().to_string()),
            ("id", self.id.trim().to_string()),
        ]
    }
}

/// A time from a filter field: `2026-12-05T14:30` (as a browser's
/// datetime-local input sends it, read as UTC), with seconds, or RFC 3339.
fn parse_time(text: &str) -> Result<Option<Timestamp>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(Timestamp(t.timestamp_millis())));
    }
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(Timestamp(t.and_utc().timestamp_millis())));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
        return Ok(midnight.map(Timestamp));
    }
    Err(format!(
        "{text:?} is not a time: write 2026-12-05T14:30 (UTC) or an RFC 3339 time"
    ))
}

/// `GET /`: executions, newest first, with counts per state, filters and pages.
pub(crate) async fn executions(
    State(console): State<Shared>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let bad =
        |title: &str, message: &str| error_page(&base, StatusCode::BAD_REQUEST, title, message);
    let id = query.id.trim();
    // A whole id opens the execution; a part of one lists the ids it starts.
    if let Ok(id) = id.parse::<ExecutionId>() {
        return Redirect::to(&format!("{}executions/{id}", base.0)).into_response();
    }
    let state = match query.state.as_str() {
        "" => None,
        name => match crate::commands::list::parse_state(name) {
            Ok(s) => Some(s),
            Err(e) => return bad("unknown state", &e.to_string()),
        },
    };
    let (created_after, created_before) = match (parse_time(&query.from), parse_time(&query.to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad("not a time", &e),
    };
    let text = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    let filter = ExecutionFilter::default()
        .status(state)
        .limit(PAGE_SIZE + 1)
        .offset(query.offset)
        .function(text(&query.function))
        .queue(text(&query.queue))
        .tag(text(&query.tag))
        .created_after(created_after)
        .created_before(created_before)
        .id_prefix(text(id));
    if let Err(e) = filter.id_range() {
        return bad("not an execution id", &e);
    }
    let stats = match console.stats().await {
        Ok(s) => s,
        Err(e) => return database_error(&base, &e),
    };
    let list = match console.stent.list_executions_where(filter).await {
        Ok(l) => l,
        Err(e) => return database_error(&base, &e),
    };
    let more = list.len() > PAGE_SIZE;
    let rows = &list[..list.len().min(PAGE_SIZE)];
    let params = query.params();
    let narrowed = params.iter().any(|(k, v)| *k != "state" && !v.is_empty());
    let with = |extra: Vec<(&'static str, String)>| {
        let mut all: Vec<(&str, String)> = params
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        all.extend(extra);
        href("./", &all)
    };
    let content = html! {
        div hidden data-live="events" {}
        h1 { "Executions" }
        form.filters method="get" action="./" {
            input type="hidden" name="state" value=(query.state);
            input type="search" name="id" value=(id) placeholder="id, or its start" aria-label="execution id";
            input type="text" name="function" value=(query.function) placeholder="function" aria-label="function";
            input type="text" name="queue" value=(query.queue) placeholder="queue" aria-label="queue";
            input type="text" name="tag" value=(query.tag) placeholder="tag" aria-label="tag";
            label { "from " input type="datetime-local" name="from" value=(query.from) aria-label="dispatched from (UTC)"; }
            label { "to " input type="datetime-local" name="to" value=(query.to) aria-label="dispatched before (UTC)"; }
            button type="submit" { "filter" }
            @if narrowed { a href=(href("./", &[("state", query.state.clone())])) { "clear" } }
        }
        nav.counts aria-label="states" {
            a class=@if state.is_none() { "current" } href=(with(vec![("state", String::new())])) { "all" }
            @for (status, n) in &stats.executions {
                a class=@if state == Some(*status) { "current" }
                    href=(with(vec![("state", status.as_str().to_string())])) {
                    (status.as_str()) " " span.count { (n) }
                }
            }
        }
        @if rows.is_empty() {
            p.empty { "No executions" @if state.is_some() || narrowed { " match" } "." }
        } @else {
            // The code version column only where versions are in use.
            @let versions = rows.iter().any(|e| e.code_version.is_some());
            table.executions {
                thead { tr { th { "id" } th { "state" } th { "function" } th { "queue" } @if versions { th { "version" } } th { "created" } th { "now" } } }
                tbody {
                    @for e in rows {
                        tr {
                            td { a.id href={ "executions/" (e.id) } { (e.id) } }
                            td { (state_badge(e.state.as_str())) }
                            td.function { (e.function) }
                            td { (e.queue) }
                            @if versions { td.version { (e.code_version.as_deref().unwrap_or("-")) } }
                            td.time { (e.created_at.format("%Y-%m-%d %H:%M:%S%.3f")) }
                            td { (now_text(e)) }
                        }
                    }
                }
            }
        }
        nav.pages {
            @if query.offset > 0 {
                a rel="prev" href=(with(vec![("offset", query.offset.saturating_sub(PAGE_SIZE).to_string())])) { "← newer" }
            }
            @if more {
                a rel="next" href=(with(vec![("offset", (query.offset + PAGE_SIZE).to_string())])) { "older →" }
            }
        }
    };
    page(&base, "executions", None, content).into_response()
}

/// What an execution is doing, in a few words, for the list.
fn now_text(e: &ExecutionState) -> String {
    if let Some(why) = &e.corrupt {
        return format!("unreadable: {why}");
    }
    if let Some(p) = &e.pause {
        return p.summary();
    }
    match e.waits.as_slice() {
        [] => e.progress_str.clone(),
        [first] => format!("waiting: {first}"),
        [first, rest @ ..] => format!("waiting: {first} (+{} more)", rest.len()),
    }
}

/// The banner saying what an action did (nothing when `done` is empty).
fn done_banner(done: &str) -> Markup {
    html! {
        @if !done.is_empty() {
            div.banner.ok role="status" { (done) }
        }
    }
}

/// A message shown after an action, passed back in the query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /executions/{id}`.
pub(crate) async fn execution(
    State(console): State<Shared>,
    base: Base,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let Ok(id) = id.parse::<ExecutionId>() else {
        return error_page(
            &base,
            StatusCode::NOT_FOUND,
            "no such execution",
            &format!("{id:?} is not an execution id (a UUID)."),
        );
    };
    let e = match console.stent.state_of(id).await {
        Ok(e) => e,
        Err(stent::Error::NotFound(_)) => {
            return error_page(
                &base,
                StatusCode::NOT_FOUND,
                "no such execution",
                &format!("There is no execution {id} in this database."),
            );
        }
        Err(e) => return database_error(&base, &e),
    };
    let span = Span {
        start: e.started_at.map(|t| t.timestamp_millis()),
        end: e.completed_at.map(|t| t.timestamp_millis()),
        active: matches!(e.state, ExecutionStatus::Pending | ExecutionStatus::Running),
        retries: e.retries,
    };
    let root = e.id.root_invocation();
    let timeline = match load_timeline(&console, &base, id, root, span).await {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let active = matches!(
        e.state,
        ExecutionStatus::Pending | ExecutionStatus::Running | ExecutionStatus::Paused
    );
    let banner = (!done.error.is_empty()).then_some(done.error.as_str());
    let content = html! {
        div hidden data-live={ "executions/" (id) "/events" } {}
        (done_banner(&done.done))
        h1 { "Execution " code { (e.id) } }
        (summary(&e, timeline.started(root)))
        @if let Some(p) = &e.pause {
            section.pause {
                h2 { "Paused" }
                p.bad { (p.text.lines().next().unwrap_or_default()) }
                @if let Some(d) = &p.divergence {
                    @if !d.diffs.is_empty() {
                        table.diffs {
                            thead { tr { th { "field" } th { "recorded" } th { "asked" } } }
                            tbody {
                                @for f in &d.diffs {
                                    tr {
                                        td { code { (f.path) } }
                                        td { code { (f.recorded.as_deref().unwrap_or("(absent)")) } }
                                        td { code { (f.asked.as_deref().unwrap_or("(absent)")) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !e.waits.is_empty() {
            section.waits {
                h2 { "Waiting for" }
                ul {
                    @for w in &e.waits {
                        li { (w.to_string())
                            @if w.invocation != e.id.root_invocation() {
                                span.muted { " (in " code { (w.invocation) } ")" }
                            }
                        }
                    }
                }
            }
        }
        @if !e.unconsumed_signals.is_empty() {
            section.signals {
                h2 { "Signals not taken yet" }
                ul {
                    @for s in &e.unconsumed_signals {
                        li { code { (s.name) } " "
                            (json_block(&payload_json(&stent::journal::Payload::from_bytes(s.payload.clone())))) }
                    }
                }
            }
        }
        @if active && !console.read_only {
            (actions(&console.csrf, &e))
        }
        section.timeline {
            h2 { "Journal" }
            (timeline.render(e.id.root_invocation()))
        }
        details.raw data-key="raw" {
            summary { "As JSON" }
            (json_block(&execution_json(&e, true)))
        }
    };
    page(&base, &format!("execution {}", e.id), banner, content).into_response()
}

fn summary(e: &ExecutionState, started: Option<(&Payload, Option<&str>)>) -> Markup {
    html! {
        dl.summary {
            dt { "function" } dd { code { (e.function) }
                @if let Some((_, Some(version))) = started { " " span.muted { "version " (version) } } }
            @if let Some((args, _)) = started { dt { "arguments" } dd { (json_block(&payload_json(args))) } }
            dt { "state" } dd { (state_badge(e.state.as_str()))
                @if let Some(i) = &e.interruption { " " span.muted { (i.to_string()) } } }
            dt { "queue" } dd { (e.queue) " (priority " (e.priority) ")" }
            @if !e.tags.is_empty() { dt { "tags" } dd { (e.tags.join(", ")) } }
            @if let Some(v) = &e.code_version { dt { "code version" } dd { code { (v) } } }
            dt { "created" } dd { (e.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
            @if let Some(t) = e.started_at { dt { "started" } dd { (t.format("%Y-%m-%d %H:%M:%S%.3f UTC")) } }
            @if let Some(t) = e.completed_at { dt { "ended" } dd { (t.format("%Y-%m-%d %H:%M:%S%.3f UTC")) } }
            dt { "retries" } dd { (e.retries) }
            dt { "progress" } dd { (e.progress_str) }
            @if let Some(f) = &e.forked_from {
                dt { "forked from" } dd { a href={ "executions/" (f.execution) } { code { (f.execution) } } " at seq " (f.at.0) }
            }
            @if let Some(why) = &e.corrupt { dt { "unreadable" } dd.bad { (why) } }
            @match &e.result {
                Some(Ok(v)) => { dt { "result" } dd { (json_block(&payload_json(v))) } }
                Some(Err(f)) => { dt { "error" } dd.bad { (json_block(&failure_json(f))) } }
                None => {}
            }
            @for (name, v) in &e.counters { dt { "counter" } dd { code { (name) } " = " (v) } }
            @for (key, v) in &e.custom_state { dt { "state" } dd { code { (key) } " = " (json_block(&payload_json(v))) } }
        }
    }
}

/// The operator's forms: each carries the CSRF token and asks the browser
/// to confirm.
fn actions(csrf: &str, e: &ExecutionState) -> Markup {
    let id = e.id;
    html! {
        section.actions {
            h2 { "Actions" }
            @if e.state == ExecutionStatus::Paused {
                form method="post" action={ "executions/" (id) "/resume" } data-confirm="Resume this execution?" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "resume" }
                }
            } @else {
                form.signal method="post" action={ "executions/" (id) "/signal" } data-confirm="Send this signal?" {
                    input type="hidden" name="csrf" value=(csrf);
                    // This form's signal is sent once, however often it is
                    // submitted (a double click, a resubmitted page).
                    input type="hidden" name="once" value=(super::new_token());
                    label { "signal " input type="text" name="name" required placeholder="name"; }
                    label { "payload (JSON) " input type="text" name="payload" placeholder="\"yes\" or {\"k\": 1}"; }
                    button type="submit" { "send" }
                }
            }
            form.cancel method="post" action={ "executions/" (id) "/cancel" } data-confirm="Cancel this execution? This cannot be undone." {
                input type="hidden" name="csrf" value=(csrf);
                label { "reason " input type="text" name="reason" placeholder="why (recorded in the journal)"; }
                button.danger type="submit" { "cancel execution" }
            }
        }
    }
}

/// One decoded journal row.
struct Row {
    seq: Seq,
    kind: String,
    at: Timestamp,
    event: Result<Event, String>,
}

/// An execution's journals, arranged for drawing.
struct Timeline {
    execution: ExecutionId,
    journals: HashMap<InvocationId, Vec<Row>>,
    /// Failed attempts of retried invocations.
    failures: HashMap<InvocationId, Vec<stent::journal::store::AttemptFailure>>,
    /// The time axis: earliest and latest recorded time.
    start: i64,
    end: i64,
}

/// One bar: an effect from its scheduling to its resolution.
struct Bar {
    seq: Seq,
    label: String,
    start: i64,
    end: Option<i64>,
    outcome: &'static str,
    child: Option<InvocationId>,
}

impl Timeline {
    fn new(
        execution: ExecutionId,
        groups: Vec<(InvocationId, Vec<stent::journal::store::JournalRow>)>,
    ) -> Timeline {
        let mut journals = HashMap::new();
        // Empty journals leave the axis to the execution's span.
        let (mut start, mut end) = (i64::MAX, i64::MIN);
        for (invocation, rows) in groups {
            let rows: Vec<Row> = rows
                .into_iter()
                .map(|r| {
                    start = start.min(r.recorded_at.0);
                    end = end.max(r.recorded_at.0);
                    Row {
                        seq: r.seq,
                        kind: r.kind,
                        at: r.recorded_at,
                        event: Event::decode(&r.bytes).map_err(|e| e.to_string()),
                    }
                })
                .collect();
            journals.insert(invocation, rows);
        }
        Timeline {
            execution,
            journals,
            failures: HashMap::new(),
            start,
            end,
        }
    }

    /// The arguments and version an invocation started with.
    fn started(&self, invocation: InvocationId) -> Option<(&Payload, Option<&str>)> {
        match self
            .journals
            .get(&invocation)?
            .first()?
            .event
            .as_ref()
            .ok()?
        {
            Event::Started { args, version, .. } => Some((args, version.as_deref())),
            _ => None,
        }
    }

    /// The effects of `invocation` as bars.
    fn bars(&self, invocation: InvocationId) -> Vec<Bar> {
        let Some(rows) = self.journals.get(&invocation) else {
            return Vec::new();
        };
        let mut bars: Vec<Bar> = Vec::new();
        let mut open: HashMap<Seq, usize> = HashMap::new();
        for row in rows {
            let Ok(event) = &row.event else { continue };
            let at = row.at.0;
            let mut push = |label: String, child: Option<InvocationId>, done: bool| {
                if !done {
                    open.insert(row.seq, bars.len());
                }
                bars.push(Bar {
                    seq: row.seq,
                    label,
                    start: at,
                    end: done.then_some(at),
                    outcome: if done { "ok" } else { "open" },
                    child,
                });
            };
            match event {
                Event::CallScheduled {
                    function, child, ..
                } => push(function.clone(), Some(*child), false),
                Event::CacheHit { function, .. } => push(
                    format!("{} (cached)", function.as_deref().unwrap_or("call")),
                    None,
                    true,
                ),
                Event::TimerStarted { duration_ms, .. } => push(
                    format!(
                        "sleep {}",
                        stent::journal::format_duration(std::time::Duration::from_millis(
                            *duration_ms
                        ))
                    ),
                    None,
                    false,
                ),
                Event::SignalAwaited { name } => push(format!("signal {name:?}"), None, false),
                Event::PatchMarker { patch } => push(format!("patch {patch:?}"), None, true),
                Event::CallCompleted { scheduled, .. }
                | Event::TimerFired { started: scheduled }
                | Event::SignalReceived {
                    awaited: scheduled, ..
                } => {
                    if let Some(&i) = open.get(scheduled) {
                        bars[i].end = Some(at);
                        bars[i].outcome = "ok";
                    }
                }
                Event::CallFailed { scheduled, .. } => {
                    if let Some(&i) = open.get(scheduled) {
                        bars[i].end = Some(at);
                        bars[i].outcome = "bad";
                    }
                }
                _ => {}
            }
        }
        bars
    }

    fn render(&self, invocation: InvocationId) -> Markup {
        let span = (self.end - self.start).max(1) as f64;
        let x = |t: i64| ((t - self.start) as f64 / span * 100.0).clamp(0.0, 100.0);
        let bars = self.bars(invocation);
        let rows = self.journals.get(&invocation);
        html! {
            @if bars.is_empty() {
                p.muted { "No calls, timers or signal waits." }
            } @else {
                ol.waterfall {
                    @for b in &bars {
                        li {
                            @let (from, to) = (x(b.start), x(b.end.unwrap_or(self.end)));
                            @let width = (to - from).max(1.0);
                            @let from = from.min(100.0 - width);
                            @let took = b.end.map(|e| elapsed_text(e - b.start)).unwrap_or_else(|| "waiting".into());
                            @if let Some(child) = b.child {
                                details data-key=(child) data-src={ "executions/" (self.execution) "/invocations/" (child) } {
                                    summary {
                                        span.seq { (b.seq.0) }
                                        span.label { (b.label)
                                            @if let Some(f) = self.failures.get(&child) {
                                                " " span.retried title="failed attempts, retried" { "↻" (f.len()) }
                                            }
                                        }
                                        (bar_svg(from, width, b.outcome))
                                        span.took { (took) }
                                    }
                                    div.child {
                                        @if let Some(failures) = self.failures.get(&child) {
                                            ol.attempts {
                                                @for f in failures {
                                                    li { "attempt " (f.attempt) " failed at " (time_text(f.at)) ": " span.bad { (f.error) } }
                                                }
                                            }
                                        }
                                        (self.lazy(&format!("executions/{}/invocations/{child}", self.execution), "its journal"))
                                    }
                                }
                            } @else {
                                div.leaf {
                                    span.seq { (b.seq.0) }
                                    span.label { (b.label) }
                                    (bar_svg(from, width, b.outcome))
                                    span.took { (took) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(rows) = rows {
                details.events data-key={ "events-" (invocation) }
                    data-src={ "executions/" (self.execution) "/invocations/" (invocation) "/events" } {
                    summary { (rows.len()) " events of " code { (invocation) } }
                    (self.lazy(&format!("executions/{}/invocations/{invocation}/events", self.execution), "the events"))
                }
            }
        }
    }

    /// Where a part loaded when opened goes: the script fills it; without
    /// the script, a link to the part.
    fn lazy(&self, src: &str, what: &str) -> Markup {
        html! {
            div.lazy { a href=(src) { "open " (what) } }
        }
    }

    /// Every event of `invocation`, as a table.
    fn events(&self, invocation: InvocationId) -> Markup {
        let Some(rows) = self.journals.get(&invocation) else {
            return html! { p.muted { "No journal." } };
        };
        html! {
            table {
                thead { tr { th { "seq" } th { "time" } th { "kind" } th { "detail" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.seq.0) }
                            td.time { (time_text(r.at)) }
                            td { (r.kind) }
                            td { @match &r.event {
                                Ok(e) => (json_block(&crate::render::event_json(e))),
                                Err(why) => span.bad { "undecodable: " (why) },
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// A bar on a 0–100 axis; SVG attributes, not inline styles, so the page's
/// content security policy can forbid inline styles.
fn bar_svg(from: f64, width: f64, outcome: &str) -> Markup {
    html! {
        svg.bar viewBox="0 0 100 4" preserveAspectRatio="none" role="img" aria-hidden="true" {
            rect class=(outcome) x=(format!("{from:.2}")) y="0" width=(format!("{width:.2}")) height="4" {}
        }
    }
}

/// `GET /dead-letters`.
pub(crate) async fn dead_letters(
    State(console): State<Shared>,
    base: Base,
    Query(done): Query<Done>,
) -> Response {
    let letters = match console.stent.list_dead_letters(200).await {
        Ok(l) => l,
        Err(e) => return database_error(&base, &e),
    };
    let writable = !console.read_only;
    let banner = (!done.error.is_empty()).then_some(done.error.as_str());
    let content = html! {
        (done_banner(&done.done))
        h1 { "Dead letters" }
        @if letters.is_empty() {
            p.empty { "No dead letters." }
        } @else {
            table {
                thead { tr { th { "task" } th { "execution" } th { "function" } th { "queue" } th { "retries" } th { "failed" } th { "reason" } @if writable { th { "" } } } }
                tbody {
                    @for d in &letters {
                        tr {
                            td { code { (d.task) } }
                            td { a href={ "executions/" (d.execution) } { code { (d.execution) } } }
                            td.function { (d.function) }
                            td { (d.queue) }
                            td { (d.retries) }
                            td.time { (time_text(d.failed_at)) }
                            td.bad { (d.reason) }
                            @if writable {
                                td.letter-actions {
                                    form method="post" action={ "dead-letters/" (d.task) "/replay" }
                                        data-confirm="Run this task again, with its full retry budget?" {
                                        input type="hidden" name="csrf" value=(console.csrf);
                                        button type="submit" { "replay" }
                                    }
                                    form method="post" action={ "dead-letters/" (d.task) "/discard" }
                                        data-confirm="Give up on this task? Its caller (or execution) fails." {
                                        input type="hidden" name="csrf" value=(console.csrf);
                                        button.danger type="submit" { "discard" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&base, "dead letters", banner, content).into_response()
}

/// Query of the cleanup page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CleanupQuery {
    /// Executions that ended more than this many days ago.
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    done: String,
}

/// Days kept when the cleanup page is opened without a choice.
pub(crate) const DEFAULT_CLEANUP_DAYS: u32 = 30;

/// `GET /cleanup`: what a cleanup would delete (a dry run), and, unless
/// read-only, the form that runs it.
pub(crate) async fn cleanup(
    State(console): State<Shared>,
    base: Base,
    Query(query): Query<CleanupQuery>,
) -> Response {
    let days = query.days.unwrap_or(DEFAULT_CLEANUP_DAYS);
    let older_than = std::time::Duration::from_secs(u64::from(days) * 86_400);
    let counts = match console.stent.cleanup(older_than, true).await {
        Ok(c) => c,
        Err(e) => return database_error(&base, &e),
    };
    let content = html! {
        (done_banner(&query.done))
        h1 { "Cleanup" }
        p { "Executions that ended (completed, failed, cancelled, timed out) more than a number of days ago can be deleted with their tasks, journals, signals and dead letters. Running and paused executions are never deleted." }
        form.filters method="get" action="cleanup" {
            label { "ended more than " input type="number" name="days" min="0" value=(days) aria-label="days"; " days ago" }
            button type="submit" { "preview" }
        }
        p.preview {
            "Would delete " strong { (counts.executions) } " execution(s), "
            strong { (counts.tasks) } " task(s) and " strong { (counts.events) } " journal event(s)."
        }
        @if !console.read_only && counts.executions > 0 {
            form.cleanup method="post" action="cleanup"
                data-confirm={ "Delete " (counts.executions) " execution(s) for good?" } {
                input type="hidden" name="csrf" value=(console.csrf);
                input type="hidden" name="days" value=(days);
                button.danger type="submit" { "delete them" }
            }
        }
    };
    page(&base, "cleanup", None, content).into_response()
}

/// What a timeline needs from its execution: its time axis (first claim
/// to end, or to now while it runs) and whether any call was retried.
struct Span {
    start: Option<i64>,
    end: Option<i64>,
    active: bool,
    retries: u32,
}

/// The journal of one invocation of execution `id`, on the execution's
/// time axis, with the failed attempts of the calls it made (looked for
/// only when the execution had retries).
async fn load_timeline(
    console: &Shared,
    base: &Base,
    id: ExecutionId,
    invocation: InvocationId,
    span: Span,
) -> Result<Timeline, Box<Response>> {
    let db = |e: stent::Error| Box::new(database_error(base, &e));
    let rows = console
        .stent
        .backend()
        .read_journal(invocation, Seq(0))
        .await
        .map_err(|e| db(e.into()))?;
    let mut timeline = Timeline::new(id, vec![(invocation, rows)]);
    if let Some(start) = span.start {
        timeline.start = timeline.start.min(start);
    }
    let end = span
        .end
        .or(span.active.then(|| console.stent.clock_now().0));
    timeline.end = timeline.end.max(end.unwrap_or(i64::MIN));
    if timeline.start > timeline.end {
        (timeline.start, timeline.end) = (0, 0);
    }
    if span.retries == 0 {
        return Ok(timeline);
    }
    let children: std::collections::HashSet<InvocationId> = timeline
        .bars(invocation)
        .into_iter()
        .filter_map(|b| b.child)
        .collect();
    let tasks = console
        .stent
        .list_tasks(
            stent::journal::store::TaskFilter::default()
                .execution(id)
                .limit(usize::MAX >> 1),
        )
        .await
        .map_err(db)?;
    for t in tasks
        .iter()
        .filter(|t| t.retries > 0 && children.contains(&t.invocation))
    {
        let failures = console
            .stent
            .task_failures(t.invocation)
            .await
            .map_err(db)?;
        if !failures.is_empty() {
            timeline.failures.insert(t.invocation, failures);
        }
    }
    Ok(timeline)
}

/// The invocation of a fragment's path (one of the execution's tasks),
/// and its timeline.
async fn fragment_timeline(
    console: &Shared,
    base: &Base,
    id: &str,
    invocation: &str,
) -> Result<(InvocationId, Timeline), Box<Response>> {
    let not_found = || {
        Box::new(error_page(
            base,
            StatusCode::NOT_FOUND,
            "no such invocation",
            "There is no such invocation in this execution.",
        ))
    };
    let db = |e: stent::journal::store::StoreError| {
        Box::new(database_error(base, &stent::Error::from(e)))
    };
    let (Ok(id), Ok(invocation)) = (
        id.parse::<ExecutionId>(),
        invocation.parse::<InvocationId>(),
    ) else {
        return Err(not_found());
    };
    let backend = console.stent.backend();
    let record = backend
        .execution(id)
        .await
        .map_err(db)?
        .ok_or_else(not_found)?;
    match backend.task(invocation).await.map_err(db)? {
        Some(task) if task.execution == id => {}
        _ => return Err(not_found()),
    }
    let span = Span {
        start: record.started_at.map(|t| t.0),
        end: record.completed_at.map(|t| t.0),
        active: matches!(
            record.status,
            ExecutionStatus::Pending | ExecutionStatus::Running
        ),
        retries: record.retries,
    };
    let timeline = load_timeline(console, base, id, invocation, span).await?;
    Ok((invocation, timeline))
}

/// `GET /executions/{id}/invocations/{invocation}`: one invocation's
/// timeline, as a fragment the execution page loads when a call is opened.
pub(crate) async fn invocation(
    State(console): State<Shared>,
    base: Base,
    Path((id, invocation)): Path<(String, String)>,
) -> Response {
    fragment(&console, &base, &id, &invocation, Timeline::render).await
}

/// `GET /executions/{id}/invocations/{invocation}/events`: every event of
/// one invocation, as a fragment.
pub(crate) async fn invocation_events(
    State(console): State<Shared>,
    base: Base,
    Path((id, invocation)): Path<(String, String)>,
) -> Response {
    fragment(&console, &base, &id, &invocation, Timeline::events).await
}

/// A part of an execution's page, drawn by `draw` from its timeline.
async fn fragment(
    console: &Shared,
    base: &Base,
    id: &str,
    invocation: &str,
    draw: fn(&Timeline, InvocationId) -> Markup,
) -> Response {
    match fragment_timeline(console, base, id, invocation).await {
        Ok((invocation, timeline)) => {
            axum::response::Html(draw(&timeline, invocation).into_string()).into_response()
        }
        Err(r) => *r,
    }
}
