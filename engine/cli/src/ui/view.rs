//! The console's page frame and the small pieces pages share. Everything
//! goes through maud, which escapes every string it is given: names,
//! payloads and errors come from anyone and are never markup.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// Where the console is mounted, ending in `/` (`/`, or `/stent/` when an
/// application nests it): every link is relative to it.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let inner = parts.uri.path().to_string();
        let full = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map(|o| o.0.path().to_string())
            .unwrap_or_else(|| inner.clone());
        // Nested at `/ops`, the console's root is `/ops` or `/ops/`.
        let prefix = match full.strip_suffix(inner.as_str()) {
            Some(prefix) => prefix,
            None if inner == "/" => full.as_str(),
            None => "",
        };
        Ok(Base(format!("{}/", prefix.trim_end_matches('/'))))
    }
}

/// A whole page: `title`, an optional banner (an error to show above the
/// content), and the content; links are relative to `base`.
pub(crate) fn page(
    base: &Base,
    title: &str,
    banner: Option<&str>,
    content: Markup,
) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · stent" }
                    base href=(base.0);
                    link rel="stylesheet" href="assets/style.css";
                    script src="assets/app.js" defer {}
                }
                body {
                    header {
                        a.brand href="./" { "stent" }
                        nav {
                            a href="./" { "executions" }
                            a href="dead-letters" { "dead letters" }
                            a href="stats" { "stats" }
                            a href="cleanup" { "cleanup" }
                        }
                    }
                    main {
                        @if let Some(banner) = banner {
                            div.banner.bad role="alert" { (banner) }
                        }
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// An error page with `status`: the server keeps serving.
pub(crate) fn error_page(base: &Base, status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        page(
            base,
            title,
            Some(message),
            html! {
                h1 { (status.as_u16()) ": " (title) }
                p { a href="./" { "back to the executions" } }
            },
        ),
    )
        .into_response()
}

/// The CSS class of a state's badge.
pub(crate) fn state_class(state: &str) -> &'static str {
    match state {
        "completed" | "done" => "ok",
        "failed" | "dead" | "timed_out" | "paused" => "bad",
        "cancelled" => "muted",
        _ => "active",
    }
}

/// A state badge.
pub(crate) fn state_badge(state: &str) -> Markup {
    html! { span class={ "badge " (state_class(state)) } { (state) } }
}

/// A JSON value, pretty-printed, collapsible when long.
pub(crate) fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("({e})"));
    if !text.contains('\n') && text.chars().count() <= 100 {
        return html! { code.json { (text) } };
    }
    if text.lines().count() > 12 {
        let first: String = text.chars().take(80).collect();
        html! {
            details.json {
                summary { code { (first) "…" } }
                pre { (text) }
            }
        }
    } else {
        html! { pre.json { (text) } }
    }
}

/// A relative URL with `path` and query parameters, each value escaped.
pub(crate) fn href(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped_and_urls_encoded() {
        let html = page(
            &Base("/".into()),
            "<t>",
            Some("<script>x</script>"),
            html! { p { ("\"><img onerror=1>") } },
        )
        .0;
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert_eq!(
            href("./", &[("state", "a b&c".into()), ("x", String::new())]),
            "./?state=a%20b%26c"
        );
    }
}
