//! The web console's router, without sockets (`tower::ServiceExt::oneshot`),
//! on SQLite and PostgreSQL: every page and action, the bad inputs (unknown
//! ids, malformed signal JSON, a missing or wrong CSRF token, a missing
//! access token), read-only mode, and escaping of untrusted strings.

#[macro_use]
mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Db, Filled, Worker, fill};
use stent::{ExecutionStatus, Stent};
use stent_cli::ui::{UiConfig, router};
use tower::ServiceExt;

on_both!(pages_show_executions_waits_and_journals);
on_both!(actions_signal_cancel_and_refuse_bad_input);
on_both!(dead_letters_are_replayed_and_discarded);
on_both!(code_versions_show_in_the_list_the_page_and_stats);

/// Executions pinned to code versions: the list grows a version column,
/// the execution page a code version line, the stats page a table of the
/// unfinished executions per version. Without versions, none of it.
async fn code_versions_show_in_the_list_the_page_and_stats(db: Db) {
    let plain = db.executor().await;
    let app = router(plain.clone(), UiConfig::new());
    let unpinned = plain
        .dispatch(common::awaits_approval("plain".into()))
        .await
        .unwrap();
    let list = get(&app, "/").await;
    assert!(list.body.contains(&unpinned.to_string()), "{}", list.body);
    assert!(!list.body.contains("<th>version</th>"), "{}", list.body);
    let stats = get(&app, "/stats").await;
    assert!(!stats.body.contains("Code versions"), "{}", stats.body);

    let pinned_executor = db.executor_of_version(Some("2026-12-05")).await;
    let pinned = pinned_executor
        .dispatch(common::awaits_approval("pinned".into()))
        .await
        .unwrap();
    let list = get(&app, "/").await;
    assert!(list.body.contains("<th>version</th>"), "{}", list.body);
    assert!(
        list.body.contains(r#"<td class="version">2026-12-05</td>"#),
        "{}",
        list.body
    );
    assert!(
        list.body.contains(r#"<td class="version">-</td>"#),
        "{}",
        list.body
    );
    let page = get(&app, &format!("/executions/{pinned}")).await;
    assert!(
        page.body
            .contains("<dt>code version</dt><dd><code>2026-12-05</code></dd>"),
        "{}",
        page.body
    );
    let stats = get(&app, "/stats").await;
    assert!(stats.body.contains("Code versions"), "{}", stats.body);
    assert!(
        stats
            .body
            .contains("<tr><td><code>2026-12-05</code></td><td>1</td></tr>"),
        "{}",
        stats.body
    );
}

/// A response's status, headers and body text.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Page {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str) -> Page {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, form: &str) -> Page {
    send(
        app,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap(),
    )
    .await
}

/// The CSRF token the console embeds in its forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 32].to_string()
}

fn form_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn twice() -> stent::RetryPolicy {
    stent::RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(1))
}

/// Body runs of `flaky_twice`, per argument (tests on both backends run
/// at once, each with its own argument).
static FLAKY_RUNS: std::sync::Mutex<Vec<(u64, u32)>> = std::sync::Mutex::new(Vec::new());

/// Fails its first two attempts, then returns.
#[stent::durable(retry_policy = twice())]
async fn flaky_twice(n: u64) -> Result<u64, String> {
    let run = {
        let mut runs = FLAKY_RUNS.lock().unwrap_or_else(|e| e.into_inner());
        match runs.iter_mut().find(|(k, _)| *k == n) {
            Some((_, r)) => {
                *r += 1;
                *r
            }
            None => {
                runs.push((n, 1));
                1
            }
        }
    };
    if run <= 2 {
        return Err(format!("flaky attempt {run}"));
    }
    Ok(n)
}

#[stent::durable]
async fn calls_flaky_twice(n: u64) -> Result<u64, String> {
    flaky_twice(n).await
}

async fn pages_show_executions_waits_and_journals(db: Db) {
    let executor = db.executor().await;
    let Filled {
        done,
        failed,
        waiting,
        dead,
    } = fill(&executor).await;
    let worker = Worker::start(&executor).await;
    let xss = executor
        .dispatch(common::hostile("\"><img src=x onerror=alert(1)>".into()))
        .await
        .unwrap();
    let _ = executor
        .wait_for::<String, String>(xss, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let n = if matches!(db, Db::Sqlite { .. }) {
        5
    } else {
        6
    };
    let retried = executor.dispatch(calls_flaky_twice(n)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(retried, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out, Ok(n));
    worker.stop().await;
    let app = router(executor.clone(), UiConfig::new());

    // The list: newest first, counts per state, a filter, pages.
    let list = get(&app, "/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    for id in [done, failed, waiting, xss] {
        assert!(list.body.contains(&id.to_string()), "{id}: {}", list.body);
    }
    assert!(list.body.contains("waiting: signal"), "{}", list.body);
    assert!(list.body.contains("data-live=\"events\""));
    let only_failed = get(&app, "/?state=failed").await;
    assert!(only_failed.body.contains(&failed.to_string()));
    assert!(!only_failed.body.contains(&format!("executions/{done}")));
    assert_eq!(
        get(&app, "/?state=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
    let open = get(&app, &format!("/?id={done}")).await;
    assert_eq!(open.status, StatusCode::SEE_OTHER);
    assert_eq!(
        open.headers[header::LOCATION],
        format!("/executions/{done}").as_str()
    );
    assert_eq!(get(&app, "/?id=nope").await.status, StatusCode::BAD_REQUEST);
    // Filters: function, tag, an id's start, a time window; they combine.
    let failed_fn = executor.state_of(failed).await.unwrap().function;
    let by_function = get(&app, &format!("/?function={failed_fn}")).await;
    assert!(by_function.body.contains(&format!("executions/{failed}")));
    assert!(!by_function.body.contains(&format!("executions/{done}")));
    let by_tag = get(&app, "/?tag=shop").await;
    assert!(
        by_tag.body.contains(&format!("executions/{done}")),
        "{}",
        by_tag.body
    );
    assert!(!by_tag.body.contains(&format!("executions/{failed}")));
    let prefix = &done.to_string()[..8];
    let by_prefix = get(&app, &format!("/?id={prefix}")).await;
    assert_eq!(by_prefix.status, StatusCode::OK);
    assert!(by_prefix.body.contains(&format!("executions/{done}")));
    let long_ago = get(&app, "/?from=2000-01-01T00:00&to=2000-01-02T00:00").await;
    assert!(
        long_ago.body.contains("No executions match"),
        "{}",
        long_ago.body
    );
    let since = get(&app, "/?from=2000-01-01T00:00&queue=default").await;
    assert!(since.body.contains(&format!("executions/{done}")));
    assert_eq!(
        get(&app, "/?from=yesterday").await.status,
        StatusCode::BAD_REQUEST
    );
    let nothing = get(&app, &format!("/?function={failed_fn}&tag=shop")).await;
    assert!(
        nothing.body.contains("No executions match"),
        "{}",
        nothing.body
    );

    // One execution: summary, result, the journal as a waterfall with the
    // nested call expandable, and what a running one waits for.
    let page = get(&app, &format!("/executions/{done}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("receipt-7-4200"), "{}", page.body);
    assert!(
        page.body
            .contains("<dt>arguments</dt><dd><pre class=\"json\">[\n  7\n]</pre>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("ol class=\"waterfall\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("::charge"), "{}", page.body);
    assert!(page.body.contains("<details data-key="), "{}", page.body);
    // A call's journal and an invocation's events are parts of their own,
    // loaded when opened.
    let marker = format!("data-src=\"executions/{done}/invocations/");
    let at = page.body.find(&marker).expect("a lazily loaded call") + marker.len();
    let child = &page.body[at..at + 36];
    let part = get(&app, &format!("/executions/{done}/invocations/{child}")).await;
    assert_eq!(part.status, StatusCode::OK);
    assert!(!part.body.contains("<html"), "a fragment: {}", part.body);
    assert!(part.body.contains("events of"), "{}", part.body);
    let events = get(
        &app,
        &format!("/executions/{done}/invocations/{child}/events"),
    )
    .await;
    assert!(events.body.contains("started"), "{}", events.body);
    assert!(events.body.contains("completed"), "{}", events.body);
    let stranger = stent::ExecutionId::new_random().root_invocation();
    let missing = get(&app, &format!("/executions/{done}/invocations/{stranger}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let page = get(&app, &format!("/executions/{waiting}")).await;
    assert!(page.body.contains("Waiting for"), "{}", page.body);
    assert!(
        page.body.contains("signal &quot;approval&quot;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"csrf\""), "{}", page.body);
    let page = get(&app, &format!("/executions/{}", dead[0].0)).await;
    assert!(page.body.contains("dead-lettered"), "{}", page.body);

    // A retried call shows its failed attempts, each with its error.
    let page = get(&app, &format!("/executions/{retried}")).await;
    assert!(page.body.contains("↻2"), "{}", page.body);
    assert!(page.body.contains("attempt 1 failed at"), "{}", page.body);
    assert!(page.body.contains("flaky attempt 2"), "{}", page.body);

    // Untrusted strings are text, never markup.
    let page = get(&app, &format!("/executions/{xss}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;"), "{}", page.body);

    // Dead letters.
    let letters = get(&app, "/dead-letters").await;
    assert!(
        letters.body.contains(&dead[0].1.to_string()),
        "{}",
        letters.body
    );
    assert!(letters.body.contains("hopeless"), "{}", letters.body);

    // Stats: throughput over the last hour, queues, leases per worker.
    let stats = get(&app, "/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert!(stats.body.contains("Finished per minute"), "{}", stats.body);
    assert!(
        stats.body.contains("<svg class=\"chart\""),
        "{}",
        stats.body
    );
    // done, failed, the hostile one and the retried one finished in the
    // last minute.
    assert!(stats.body.contains(">4 finished"), "{}", stats.body);
    assert!(stats.body.contains("<rect class=\"ok\""), "{}", stats.body);
    assert!(stats.body.contains("Leases per worker"), "{}", stats.body);

    // Unknown things are 404 pages.
    let missing = stent::ExecutionId::new_random();
    let page = get(&app, &format!("/executions/{missing}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("no such execution"), "{}", page.body);
    assert_eq!(
        get(&app, "/executions/not-an-id").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/nowhere").await.status, StatusCode::NOT_FOUND);

    // Live streams: the first event is the baseline of what a page shows.
    for uri in [
        "/events".to_string(),
        format!("/executions/{waiting}/events"),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(uri.as_str()).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{uri}"
        );
        let mut stream = response.into_body().into_data_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            use futures_util::StreamExt;
            stream.next().await
        })
        .await
        .expect("an event at once")
        .expect("a frame")
        .expect("bytes");
        let text = String::from_utf8_lossy(&first);
        assert!(text.contains("event: changed"), "{uri}: {text}");
    }
    assert_eq!(
        get(&app, "/executions/not-an-id/events").await.status,
        StatusCode::NOT_FOUND
    );

    // Assets are embedded.
    let css = get(&app, "/assets/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("waterfall"));
    let js = get(&app, "/assets/app.js").await;
    assert!(js.body.contains("EventSource"));

    // Mounted under a prefix, links and redirects keep the prefix.
    let nested = Router::new().nest("/ops/stent", router(executor.clone(), UiConfig::new()));
    let page = get(&nested, "/ops/stent").await;
    assert!(
        page.body.contains("<base href=\"/ops/stent/\">"),
        "{}",
        page.body
    );
    let open = get(&nested, &format!("/ops/stent?id={done}")).await;
    assert_eq!(
        open.headers[header::LOCATION],
        format!("/ops/stent/executions/{done}").as_str()
    );
}

async fn actions_signal_cancel_and_refuse_bad_input(db: Db) {
    let executor: Stent = db.executor().await;
    let worker = Worker::start(&executor).await;
    let first = executor
        .dispatch(common::awaits_approval("doc-7".into()))
        .await
        .unwrap();
    let second = executor
        .dispatch(common::awaits_approval("doc-8".into()))
        .await
        .unwrap();
    let app = router(executor.clone(), UiConfig::new());
    let page = get(&app, &format!("/executions/{first}")).await;
    let csrf = csrf_of(&page.body);

    // A wrong or missing CSRF token is refused, and nothing is sent.
    let refused = post(
        &app,
        &format!("/executions/{first}/signal"),
        "csrf=0123456789abcdef0123456789abcdef&name=approval&payload=%22eve%22",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let missing = post(
        &app,
        &format!("/executions/{first}/signal"),
        "name=approval",
    )
    .await;
    assert!(missing.status.is_client_error(), "{}", missing.status);

    // Malformed JSON: 400 with the parser's message.
    let bad = post(
        &app,
        &format!("/executions/{first}/signal"),
        &format!("csrf={csrf}&name=approval&payload={}", form_value("{oops")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not JSON"), "{}", bad.body);
    assert!(bad.body.contains("line 1"), "{}", bad.body);

    // A good signal completes the execution. The form is submitted twice
    // (a double click): its one-time key stores the signal once.
    let at = page
        .body
        .find("name=\"once\" value=\"")
        .expect("a one-time key")
        + 19;
    let once = &page.body[at..at + 32];
    let good = format!(
        "csrf={csrf}&once={once}&name=approval&payload={}",
        form_value("\"alice\"")
    );
    let sent = post(&app, &format!("/executions/{first}/signal"), &good).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let again = post(&app, &format!("/executions/{first}/signal"), &good).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let location = sent.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("/executions/{first}?done=")),
        "{location}"
    );
    let got = executor
        .wait_for::<String, String>(first, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(got, Ok("doc-7 approved by alice".to_string()));
    let left = executor
        .backend()
        .pending_signals(first, &[])
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "a double submit stored two signals: {left:?}"
    );
    let after = get(&app, &location).await;
    assert!(after.body.contains("sent signal"), "{}", after.body);
    // A signal to an ended execution is refused with a reason.
    let late = post(
        &app,
        &format!("/executions/{first}/signal"),
        &format!("csrf={csrf}&name=approval&payload=1"),
    )
    .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert!(late.body.contains("already ended"), "{}", late.body);

    // Resume: a signal that does not decode pauses an execution; the page
    // then offers resume, and resuming lets a good signal complete it.
    let typo = executor
        .dispatch(common::awaits_approval("doc-9".into()))
        .await
        .unwrap();
    executor.send_signal(typo, "approval", &42).await.unwrap();
    let mut paused = false;
    for _ in 0..500 {
        if executor.state_of(typo).await.unwrap().state == ExecutionStatus::Paused {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(paused, "the bad signal pauses the execution");
    let page = get(&app, &format!("/executions/{typo}")).await;
    assert!(
        page.body.contains(&format!("executions/{typo}/resume")),
        "{}",
        page.body
    );
    assert!(page.body.contains("Paused"), "{}", page.body);
    let resumed = post(
        &app,
        &format!("/executions/{typo}/resume"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    executor
        .send_signal(typo, "approval", &"bob")
        .await
        .unwrap();
    let got = executor
        .wait_for::<String, String>(typo, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(got, Ok("doc-9 approved by bob".to_string()));
    // Resuming what is not paused is refused with the reason.
    let again = post(
        &app,
        &format!("/executions/{typo}/resume"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(again.status.is_client_error(), "{}", again.status);

    // Cancel, with the reason recorded.
    let cancelled = post(
        &app,
        &format!("/executions/{second}/cancel"),
        &format!(
            "csrf={csrf}&reason={}",
            form_value("duplicate <b>order</b>")
        ),
    )
    .await;
    assert_eq!(
        cancelled.status,
        StatusCode::SEE_OTHER,
        "{}",
        cancelled.body
    );
    let state = executor.state_of(second).await.unwrap();
    assert_eq!(state.state, ExecutionStatus::Cancelled);
    let page = get(&app, &format!("/executions/{second}")).await;
    assert!(
        page.body.contains("duplicate &lt;b&gt;order&lt;/b&gt;"),
        "{}",
        page.body
    );
    // Ended: no more forms.
    assert!(!page.body.contains("name=\"csrf\""), "{}", page.body);

    // Read-only: no write route at all.
    let read_only = router(executor.clone(), UiConfig::read_only());
    let page = get(&read_only, &format!("/executions/{second}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let refused = post(
        &read_only,
        &format!("/executions/{second}/cancel"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(
        refused.status == StatusCode::METHOD_NOT_ALLOWED || refused.status == StatusCode::NOT_FOUND,
        "{}",
        refused.status
    );

    // A token: 401 without it; with it in the query a cookie is set and
    // then carries it; a bearer header works too.
    let guarded = router(executor.clone(), UiConfig::new().with_token("s3cret"));
    assert_eq!(get(&guarded, "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&guarded, "/?token=wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    let first_visit = get(&guarded, "/?token=s3cret").await;
    assert_eq!(first_visit.status, StatusCode::OK);
    let cookie = first_visit.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("stent_ui_token=s3cret;"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let with_cookie = send(
        &guarded,
        Request::get("/dead-letters")
            .header(header::COOKIE, "stent_ui_token=s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(with_cookie.status, StatusCode::OK);
    let with_bearer = send(
        &guarded,
        Request::get("/")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(with_bearer.status, StatusCode::OK);

    // Cleanup: a preview, then the deletion of the three ended executions.
    let preview = get(&app, "/cleanup?days=0").await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview
            .body
            .contains("Would delete <strong>3</strong> execution(s)"),
        "{}",
        preview.body
    );
    let kept = get(&app, "/cleanup").await;
    assert!(
        kept.body.contains("Would delete <strong>0</strong>"),
        "{}",
        kept.body
    );
    let refused = post(&app, "/cleanup", "csrf=wrong&days=0").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(executor.state_of(first).await.is_ok());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let deleted = post(&app, "/cleanup", &format!("csrf={csrf}&days=0")).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let after = get(&app, deleted.headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        after.body.contains("deleted 3 execution(s)"),
        "{}",
        after.body
    );
    assert!(matches!(
        executor.state_of(first).await,
        Err(stent::Error::NotFound(_))
    ));
    worker.stop().await;
}

async fn dead_letters_are_replayed_and_discarded(db: Db) {
    let executor: Stent = db.executor().await;
    let Filled { dead, .. } = fill(&executor).await;
    let app = router(executor.clone(), UiConfig::new());
    let page = get(&app, "/dead-letters").await;
    assert!(page.body.contains("dead-letters/"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let [(first_exec, first), (second_exec, second)] = dead;

    let replayed = post(
        &app,
        &format!("/dead-letters/{first}/replay"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER, "{}", replayed.body);
    let page = get(&app, replayed.headers[header::LOCATION].to_str().unwrap()).await;
    assert!(
        page.body.contains(&format!("replayed task {first}")),
        "{}",
        page.body
    );
    assert!(executor.get_dead_letter(first).await.unwrap().is_none());
    // Again: it is gone.
    let again = post(
        &app,
        &format!("/dead-letters/{first}/replay"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Discarding fails its caller, and so the execution.
    let refused = post(
        &app,
        &format!("/dead-letters/{second}/discard"),
        "csrf=wrong",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let discarded = post(
        &app,
        &format!("/dead-letters/{second}/discard"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(
        discarded.status,
        StatusCode::SEE_OTHER,
        "{}",
        discarded.body
    );
    let worker = Worker::start(&executor).await;
    let out = executor
        .wait_for::<u64, String>(second_exec, Some(Duration::from_secs(30)))
        .await;
    assert!(
        out.is_err() || out.as_ref().is_ok_and(|r| r.is_err()),
        "{out:?}"
    );
    worker.stop().await;
    let _ = first_exec;
    assert_eq!(
        get(&app, "/dead-letters/not-a-task/replay").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// A database that cannot be read gives an error page and the console
/// keeps serving; once the database is back, so are the pages. (PostgreSQL:
/// the executions table is renamed away and back under the running
/// console.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_survives_a_database_that_fails_and_recovers() {
    use sqlx::Connection;
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Db::Postgres { url, schema, .. } = &db else {
        unreachable!("a PostgreSQL database")
    };
    let executor = db.executor().await;
    let id = executor.dispatch(common::charge(1, 2)).await.unwrap();
    let app = router(executor.clone(), UiConfig::new());
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);

    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE \"{schema}\".{from} RENAME TO {to}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(rename("executions", "executions_away")))
        .execute(&mut conn)
        .await
        .unwrap();
    for uri in [
        "/".to_string(),
        format!("/executions/{id}"),
        "/stats".to_string(),
    ] {
        let page = get(&app, &uri).await;
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            page.body
        );
        assert!(
            page.body.contains("could not be read"),
            "{uri}: {}",
            page.body
        );
        assert!(page.body.contains("role=\"alert\""), "{uri}: {}", page.body);
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(rename("executions_away", "executions")))
        .execute(&mut conn)
        .await
        .unwrap();
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&id.to_string()));
}

/// Starts `stent ui ARGS` on `db`; returns the process and the URL it
/// printed.
fn start_console(db: &Db, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut all = db.args();
    all.push("ui".into());
    all.extend(args.iter().map(|a| a.to_string()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stent"))
        .args(&all)
        .env_remove("STENT_DB")
        .env_remove("STENT_UI_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stent ui starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (child, url)
}

/// A GET over a plain socket: the status line and the body.
async fn http_get(url: &str, auth: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let connect = host.replace("0.0.0.0", "127.0.0.1");
    let mut stream = tokio::net::TcpStream::connect(&connect).await.unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.lines().next().unwrap_or_default().to_string();
    (status, response)
}

/// The `stent ui` command: on loopback it serves without a token; on any
/// other address it makes one up, prints it in the URL, and refuses
/// requests without it; `--read-only` serves no form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_command_serves_and_guards_other_addresses() {
    let db = Db::sqlite().await;
    let executor = db.executor().await;
    let id = executor
        .dispatch(common::awaits_approval("doc-cmd".into()))
        .await
        .unwrap();

    let (mut open, url) = start_console(&db, &["--listen", "127.0.0.1:0"]);
    assert!(!url.contains("token="), "{url}");
    let (status, body) = http_get(&format!("{url}executions/{id}"), None).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("name=\"csrf\""), "a form: {body}");
    open.kill().unwrap();
    open.wait().unwrap();

    let (mut guarded, url) = start_console(&db, &["--listen", "0.0.0.0:0", "--read-only"]);
    let token = url
        .split("token=")
        .nth(1)
        .expect("a token in the URL")
        .to_string();
    assert_eq!(token.len(), 32, "{url}");
    let bare = url.split('?').next().unwrap().to_string();
    let (status, _) = http_get(&bare, None).await;
    assert!(status.contains("401"), "{status}");
    let (status, body) = http_get(&format!("{bare}executions/{id}"), Some(&token)).await;
    assert!(status.contains("200"), "{status}");
    assert!(
        !body.contains("name=\"csrf\""),
        "read-only has no form: {body}"
    );
    guarded.kill().unwrap();
    guarded.wait().unwrap();
}
