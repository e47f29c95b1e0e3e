//! Live updates: server-sent events that say when what a page shows has
//! changed. Each stream reads the database once a second and sends a
//! `changed` event carrying a fingerprint of what it read whenever that
//! differs from the last one (the first event is the baseline). A read
//! that fails is a change too, so the page shows the error, and the next
//! good read shows the page again.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use stent::ExecutionId;

use super::Shared;

/// How often a stream reads the database.
const POLL: Duration = Duration::from_secs(1);

/// A stream of `changed` events: `read` is called every [`POLL`].
fn changes<F, Fut>(console: Shared, read: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(Shared) -> Fut + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    stream::unfold(
        (console, read, None::<String>, true),
        |(console, read, last, first)| async move {
            if !first {
                tokio::time::sleep(POLL).await;
            }
            let mut last = last;
            loop {
                let now = read(console.clone()).await;
                if last.as_deref() != Some(now.as_str()) {
                    let event = Event::default().event("changed").data(now.clone());
                    return Some((Ok(event), (console, read, Some(now), false)));
                }
                last = Some(now);
                tokio::time::sleep(POLL).await;
            }
        },
    )
}

/// `GET /events`: changes to the executions list (counts per state, the
/// newest execution).
pub(crate) async fn list_events(State(console): State<Shared>) -> Response {
    let stream = changes(console, |console| async move {
        let counts = match console.stats().await {
            Ok(s) => format!("{:?}", s.executions),
            Err(e) => return format!("error: {e}"),
        };
        match console
            .stent
            .backend()
            .list_executions(
                stent::journal::store::ExecutionFilter::default()
                    .limit(1)
                    .offset(0),
            )
            .await
        {
            Ok(newest) => format!("{counts} {:?}", newest.first().map(|r| r.id)),
            Err(e) => format!("error: {e}"),
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /executions/{id}/events`: changes to one execution (its state, its
/// calls and what it waits for).
pub(crate) async fn execution_events(
    State(console): State<Shared>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<ExecutionId>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let stream = changes(console, move |console| async move {
        match console.stent.state_of(id).await {
            Ok(e) => format!(
                "{} {} {} {} {}",
                e.state.as_str(),
                e.progress.len(),
                e.progress_str,
                e.waits
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                e.unconsumed_signals.len()
            ),
            Err(e) => format!("error: {e}"),
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
