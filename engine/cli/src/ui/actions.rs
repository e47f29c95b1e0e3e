//! The console's writes: send a signal, cancel, resume. Each is a POST
//! carrying the console's CSRF token; bad input is a 400 page with the
//! reason, and a done action returns to the execution's page with what
//! happened.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value as Json;
use stent::{ExecutionId, InvocationId};

use super::Shared;
use super::view::{Base, encode_component, error_page};
use super::{Console, constant_time_eq};

/// Longest signal name or cancellation reason accepted from a form.
const MAX_TEXT: usize = 4096;

/// A signal form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignalForm {
    csrf: String,
    name: String,
    #[serde(default)]
    payload: String,
    /// The form's one-time key: its signal is stored once per key.
    #[serde(default)]
    once: String,
}

/// A cancel form.
#[derive(Debug, Deserialize)]
pub(crate) struct CancelForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// A form with only the token.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    csrf: String,
}

/// Refuses a form whose CSRF token is not this console's.
fn check_csrf(console: &Console, base: &Base, csrf: &str) -> Result<(), Box<Response>> {
    if constant_time_eq(csrf.as_bytes(), console.csrf.as_bytes()) {
        return Ok(());
    }
    Err(Box::new(error_page(
        base,
        StatusCode::FORBIDDEN,
        "refused",
        "The form's CSRF token does not match this console (it was restarted, or the \
         request did not come from its page). Reload the page and try again.",
    )))
}

/// Checks the CSRF token and parses the id in the path (`what` names it
/// for the 404 page).
fn checked<T: std::str::FromStr>(
    console: &Console,
    base: &Base,
    csrf: &str,
    id: &str,
    what: &str,
) -> Result<T, Box<Response>> {
    check_csrf(console, base, csrf)?;
    id.parse::<T>().map_err(|_| {
        Box::new(error_page(
            base,
            StatusCode::NOT_FOUND,
            &format!("no such {what}"),
            &format!("{id:?} is not a {what} id (a UUID)."),
        ))
    })
}

/// Back to the console page at `path` (relative to its base; may carry a
/// query), saying what happened as `key=message`.
fn back(base: &Base, path: &str, key: &str, message: &str) -> Response {
    let join = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!(
        "{}{path}{join}{key}={}",
        base.0,
        encode_component(message)
    ))
    .into_response()
}

/// After an action that changed the database: what it published (a
/// signal, a cancellation, a task made runnable) reaches the notifier,
/// then the browser goes to `path` with `message`.
async fn done(console: &Shared, base: &Base, path: &str, message: &str) -> Response {
    console.stent.flush_notifications().await;
    back(base, path, "done", message)
}

/// The error page for a failed action: 404 for an unknown execution, 409
/// when it has ended, 503 when the database failed, 400 otherwise.
fn failed(base: &Base, what: &str, e: &stent::Error) -> Response {
    let status = match e {
        stent::Error::NotFound(_) => StatusCode::NOT_FOUND,
        stent::Error::Ended { .. } => StatusCode::CONFLICT,
        stent::Error::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_page(base, status, &format!("could not {what}"), &e.to_string())
}

/// `POST /executions/{id}/signal`: `name`, and `payload` as JSON (empty:
/// `null`).
pub(crate) async fn signal(
    State(console): State<Shared>,
    base: Base,
    Path(id): Path<String>,
    Form(form): Form<SignalForm>,
) -> Response {
    let id: ExecutionId = match checked(&console, &base, &form.csrf, &id, "execution") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let name = form.name.trim();
    if name.is_empty() || name.len() > MAX_TEXT {
        return error_page(
            &base,
            StatusCode::BAD_REQUEST,
            "bad signal",
            "A signal needs a name (at most 4096 bytes).",
        );
    }
    let payload: Json = match form.payload.trim() {
        "" => Json::Null,
        text => match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return error_page(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "bad signal payload",
                    &format!(
                        "The payload is not JSON: {e}. Quote a string (\"yes\"), or write a \
                         number, an array or an object."
                    ),
                );
            }
        },
    };
    let sent = match form.once.trim() {
        "" => console.stent.send_signal(id, name, &payload).await,
        once if once.len() <= 64 => {
            let key = format!("console:{once}");
            console
                .stent
                .send_signal_with_key(id, name, &payload, &key)
                .await
        }
        _ => {
            return error_page(
                &base,
                StatusCode::BAD_REQUEST,
                "bad signal form",
                "The form's one-time key is too long; reload the page and send again.",
            );
        }
    };
    match sent {
        Ok(()) => {
            done(
                &console,
                &base,
                &format!("executions/{id}"),
                &format!("sent signal {name:?}"),
            )
            .await
        }
        Err(e) => failed(&base, "send the signal", &e),
    }
}

/// `POST /executions/{id}/cancel`: with an optional `reason`.
pub(crate) async fn cancel(
    State(console): State<Shared>,
    base: Base,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    let id: ExecutionId = match checked(&console, &base, &form.csrf, &id, "execution") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let reason = match form.reason.trim() {
        "" => "cancelled from the stent console".to_string(),
        r if r.len() > MAX_TEXT => {
            return error_page(
                &base,
                StatusCode::BAD_REQUEST,
                "reason too long",
                "A cancellation reason is at most 4096 bytes.",
            );
        }
        r => r.to_string(),
    };
    match console.stent.cancel_with_reason(id, reason).await {
        Ok(report) if report.cancelled => {
            done(&console, &base, &format!("executions/{id}"), "cancelled").await
        }
        Ok(_) => back(
            &base,
            &format!("executions/{id}"),
            "error",
            "it had already ended; nothing to cancel",
        ),
        Err(e) => failed(&base, "cancel", &e),
    }
}

/// `POST /executions/{id}/resume`: re-queues a paused execution.
pub(crate) async fn resume(
    State(console): State<Shared>,
    base: Base,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let id: ExecutionId = match checked(&console, &base, &form.csrf, &id, "execution") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    match console.stent.resume(id).await {
        Ok(()) => {
            done(
                &console,
                &base,
                &format!("executions/{id}"),
                "resumed: a worker replays it on the code it runs",
            )
            .await
        }
        Err(e) => failed(&base, "resume", &e),
    }
}

/// The 404 page of a task with no dead letter.
fn no_dead_letter(base: &Base, task: InvocationId) -> Response {
    error_page(
        base,
        StatusCode::NOT_FOUND,
        "no such dead letter",
        &format!("Task {task} has no dead letter (replayed or discarded already?)."),
    )
}

/// `POST /dead-letters/{task}/replay`: runs the task again from where it
/// stopped, with its full retry budget.
pub(crate) async fn replay_dead_letter(
    State(console): State<Shared>,
    base: Base,
    Path(task): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let task: InvocationId = match checked(&console, &base, &form.csrf, &task, "dead letter") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match console.stent.replay_dead_letter(task, None, true).await {
        Ok(_) => {
            done(
                &console,
                &base,
                "dead-letters",
                &format!("replayed task {task}"),
            )
            .await
        }
        Err(stent::Error::DeadLetterNotFound(_)) => no_dead_letter(&base, task),
        Err(e) => failed(&base, "replay the dead letter", &e),
    }
}

/// `POST /dead-letters/{task}/discard`: gives up on the task; its caller
/// (or, for a root, its execution) fails.
pub(crate) async fn discard_dead_letter(
    State(console): State<Shared>,
    base: Base,
    Path(task): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let task: InvocationId = match checked(&console, &base, &form.csrf, &task, "dead letter") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match console.stent.discard_dead_letter(task).await {
        Ok(true) => {
            done(
                &console,
                &base,
                "dead-letters",
                &format!("discarded task {task}"),
            )
            .await
        }
        Ok(false) => no_dead_letter(&base, task),
        Err(e) => failed(&base, "discard the dead letter", &e),
    }
}

/// A cleanup form.
#[derive(Debug, Deserialize)]
pub(crate) struct CleanupForm {
    csrf: String,
    days: u32,
}

/// `POST /cleanup`: deletes the executions that ended more than `days`
/// days ago, with everything of theirs.
pub(crate) async fn cleanup(
    State(console): State<Shared>,
    base: Base,
    Form(form): Form<CleanupForm>,
) -> Response {
    if let Err(r) = check_csrf(&console, &base, &form.csrf) {
        return *r;
    }
    let older_than = std::time::Duration::from_secs(u64::from(form.days) * 86_400);
    match console.stent.cleanup(older_than, false).await {
        Ok(counts) => back(
            &base,
            &format!("cleanup?days={}", form.days),
            "done",
            &format!(
                "deleted {} execution(s), {} task(s), {} journal event(s)",
                counts.executions, counts.tasks, counts.events
            ),
        ),
        Err(e) => failed(&base, "clean up", &e),
    }
}
