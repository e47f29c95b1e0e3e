//! `stent ui`: a web console over a stent database — executions, what each
//! waits for, journals as timelines — and, unless read-only, the operator's
//! actions (signal, cancel, resume), served by the `stent` binary itself.
//!
//! [`router`] is the whole console as an [`axum::Router`], so an
//! application can mount it in its own server, behind its own auth:
//!
//! ```no_run
//! # async fn demo(executor: stent::Stent) -> std::io::Result<()> {
//! let console = stent_cli::ui::router(executor, stent_cli::ui::UiConfig::read_only());
//! let app = axum::Router::new().nest("/stent", console);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Safety, since it can change production state: every page escapes what
//! it shows (function names, payloads, errors come from anyone); writes are
//! POSTs that carry the console's CSRF token; a read-only console has no
//! write route at all; with a token set, every request without it gets 401.

mod actions;
mod live;
mod pages;
mod stats;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use stent::Stent;

/// How the console behaves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UiConfig {
    /// Serve no write route at all (no signal, cancel, resume, dead-letter
    /// replay or discard, cleanup).
    pub read_only: bool,
    /// Every request must carry this token: as `Authorization: Bearer T`,
    /// as the `stent_ui_token` cookie, or once as `?token=T` (which sets
    /// the cookie).
    pub token: Option<String>,
}

impl UiConfig {
    /// Reads and writes, no token: for a console bound to 127.0.0.1.
    pub fn new() -> UiConfig {
        UiConfig::default()
    }

    /// Reads only: no write route is served.
    pub fn read_only() -> UiConfig {
        UiConfig {
            read_only: true,
            token: None,
        }
    }

    /// Sets whether the console is read-only.
    pub fn with_read_only(mut self, read_only: bool) -> UiConfig {
        self.read_only = read_only;
        self
    }

    /// Requires `token` on every request.
    pub fn with_token(mut self, token: impl Into<String>) -> UiConfig {
        self.token = Some(token.into());
        self
    }

    /// Requires `token` on every request, if there is one.
    pub fn with_token_opt(mut self, token: Option<String>) -> UiConfig {
        self.token = token;
        self
    }
}

/// What every handler shares.
pub(crate) struct Console {
    pub stent: Stent,
    pub read_only: bool,
    /// Embedded in every form; a POST without it is refused.
    pub csrf: String,
    pub token: Option<String>,
    /// The last whole-store counts, and when they were read.
    stats: tokio::sync::Mutex<Option<(tokio::time::Instant, stent::records::StoreStats)>>,
}

/// How long whole-store counts are reused: they scan every execution and
/// task, and every open page's live stream asks for them each second.
const STATS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Console {
    /// The whole-store counts, read at most once per [`STATS_TTL`] however
    /// many pages and streams ask.
    pub(crate) async fn stats(&self) -> stent::Result<stent::records::StoreStats> {
        let mut cached = self.stats.lock().await;
        if let Some((at, stats)) = cached.as_ref()
            && at.elapsed() < STATS_TTL
        {
            return Ok(stats.clone());
        }
        let stats = self.stent.stats().await?;
        *cached = Some((tokio::time::Instant::now(), stats.clone()));
        Ok(stats)
    }
}

pub(crate) type Shared = Arc<Console>;

/// The name of the cookie that carries the access token.
const TOKEN_COOKIE: &str = "stent_ui_token";

/// The console as a router over `stent`'s database.
pub fn router(stent: Stent, config: UiConfig) -> Router {
    let console = Arc::new(Console {
        stent,
        read_only: config.read_only,
        csrf: new_token(),
        token: config.token,
        stats: tokio::sync::Mutex::new(None),
    });
    let mut app = Router::new()
        .route("/", get(pages::executions))
        .route("/events", get(live::list_events))
        .route("/executions/{id}", get(pages::execution))
        .route("/executions/{id}/events", get(live::execution_events))
        .route(
            "/executions/{id}/invocations/{invocation}",
            get(pages::invocation),
        )
        .route(
            "/executions/{id}/invocations/{invocation}/events",
            get(pages::invocation_events),
        )
        .route("/dead-letters", get(pages::dead_letters))
        .route("/stats", get(stats::stats))
        .route("/cleanup", get(pages::cleanup))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/app.js", get(pages::script));
    if !console.read_only {
        app = app
            .route("/executions/{id}/signal", post(actions::signal))
            .route("/executions/{id}/cancel", post(actions::cancel))
            .route("/executions/{id}/resume", post(actions::resume))
            .route(
                "/dead-letters/{task}/replay",
                post(actions::replay_dead_letter),
            )
            .route(
                "/dead-letters/{task}/discard",
                post(actions::discard_dead_letter),
            )
            .route("/cleanup", post(actions::cleanup));
    }
    app.fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// Refuses requests without the token (when one is set), and sets the
/// headers every response carries.
async fn guard(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let mut set_cookie = None;
    if let Some(token) = &console.token {
        match presented_token(request.headers(), request.uri().query()) {
            Some((given, from_query)) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                if from_query {
                    set_cookie = Some(format!(
                        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    ));
                }
            }
            _ => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    view::page(
                        &view::Base("/".into()),
                        "unauthorized",
                        None,
                        maud::html! {
                            h1 { "401: a token is needed" }
                            p { "Open the URL " code { "stent ui" } " printed, with its "
                                code { "?token=…" } ", or send "
                                code { "Authorization: Bearer <token>" } "." }
                        },
                    ),
                )
                    .into_response();
                secure_headers(response.headers_mut());
                return response;
            }
        }
    }
    let mut response = next.run(request).await;
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    secure_headers(response.headers_mut());
    response
}

/// No framing by other sites, no sniffing, no inline script but ours.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The token a request carries, and whether it came in the query string.
fn presented_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<(&'a str, bool)> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((bearer.trim(), false));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for cookie in cookies.split(';') {
            if let Some(value) = cookie
                .trim()
                .strip_prefix(TOKEN_COOKIE)
                .and_then(|r| r.strip_prefix('='))
            {
                return Some((value, false));
            }
        }
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|t| (t, true))
}

/// Compares without stopping at the first difference, so response times do
/// not tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True if `addr` is a loopback address (127.0.0.0/8 or ::1): the console
/// may listen there without a token.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// A fresh random access token (122 random bits, hex).
#[allow(clippy::disallowed_methods)] // a secret for a server, not an id inside an execution
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_header_cookie_and_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            presented_token(&headers, Some("a=1&token=abc")),
            Some(("abc", true))
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; stent_ui_token=def"),
        );
        assert_eq!(presented_token(&headers, None), Some(("def", false)));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ghi"),
        );
        assert_eq!(presented_token(&headers, None), Some(("ghi", false)));
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"same!"));
    }
}
