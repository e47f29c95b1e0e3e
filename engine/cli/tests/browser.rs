//! The web console in a real browser: Debian's headless Chromium, driven
//! over WebDriver (chromedriver) by fantoccini. It opens the list, filters
//! it, opens an execution and expands a child in its timeline, sends a
//! signal from the form and sees the page complete it, watches a page
//! update live (without a reload) when a signal is sent from elsewhere,
//! cancels an execution, and checks that hostile strings stored in names,
//! arguments and errors stay text (no script runs, no alert opens).
//! Screenshots are taken and checked for being real PNGs; with
//! `STENT_UI_SCREENSHOTS=DIR` they are also written to DIR.
//!
//! Needs `chromium` and `chromedriver` (`.ci/run` installs them). Without
//! them the test says so and passes, unless `STENT_REQUIRE_SERVICES=1`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Db, Worker, fill};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use stent::ExecutionStatus;
use stent_cli::ui::{UiConfig, router};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        stent_test_services::skip(
            "Chromium and ChromeDriver",
            &format!(
                "{CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install -y chromium chromium-driver)"
            ),
        );
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// Serves the console on a free loopback port.
async fn serve(executor: stent::Stent) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(executor, UiConfig::new()))
            .await
            .expect("console serves")
    });
    addr
}

/// A screenshot, checked for being a PNG of some size; kept in
/// `STENT_UI_SCREENSHOTS` when set.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.len() > 5_000, "{name}: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: not a PNG");
    if let Ok(dir) = std::env::var("STENT_UI_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }
}

/// Waits until `check` holds for the page, or fails with `what` after 15
/// seconds of wall time (a browser that stalls fails the test, however
/// long each check takes).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(true) => return,
            Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    panic!("never: {what}");
}

/// The page's text. Right after a form is submitted the browser may be
/// between two documents (no body yet, or a stale one): asks again then.
async fn body_text(client: &Client) -> String {
    let mut last = None;
    for _ in 0..50 {
        let text = match client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await,
            Err(e) => Err(e),
        };
        match text {
            Ok(text) => return text,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page has no readable body: {last:?}")
}

/// Clicks the submit button at `selector`, and accepts the confirmation
/// the page asks for first.
async fn submit_confirmed(client: &Client, selector: &str) {
    client
        .find(Locator::Css(selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the confirmation", || async {
        client.get_alert_text().await.is_ok()
    })
    .await;
    client.accept_alert().await.unwrap();
}

/// Waits until the page's live stream has sent its first event.
async fn live_connected(client: &Client) {
    eventually("the live stream to connect", || async {
        let live = client
            .execute("return document.body.dataset.live || '';", vec![])
            .await
            .unwrap();
        live.as_str() == Some("connected")
    })
    .await;
}

/// No alert, confirm or prompt is open (a script that ran would open one).
async fn no_dialog(client: &Client) {
    assert!(
        client.get_alert_text().await.is_err(),
        "a dialog is open: a stored string ran as script"
    );
}

#[stent::durable]
async fn hostile_call(name: String) -> Result<String, String> {
    common::hostile(name).await
}

/// A durable function whose registered name is hostile markup.
struct HostileName;

impl stent::definition::DurableFn for HostileName {
    type Args = (u32,);
    type Output = u32;
    type Error = String;
    const NAME: &'static str = "evil<script>alert('name')</script>\"><img src=x onerror=alert(2)>";

    fn options() -> stent::definition::DurableOptions<Self::Args> {
        stent::definition::DurableOptions::new()
    }

    fn run(args: Self::Args) -> stent::definition::BoxFuture<Result<u32, String>> {
        Box::pin(async move { Ok(args.0) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let db = Db::sqlite().await;
    let executor = db.executor().await;
    let filled = fill(&executor).await;
    let worker = Worker::start(&executor).await;
    let xss = executor
        .dispatch(hostile_call("\"><img src=x onerror=alert(1)>".into()))
        .tags(["<script>alert('tag')</script>"])
        .await
        .unwrap();
    let _ = executor
        .wait_for::<String, String>(xss, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    // A hostile function name, and a hostile signal name left unconsumed.
    let mut hostile_registry = stent::FunctionRegistry::new();
    hostile_registry.register_def::<HostileName>();
    let hostile_executor = db.executor_with(hostile_registry).await;
    let hostile_worker = Worker::start(&hostile_executor).await;
    let named = hostile_executor
        .dispatch(stent::Call::<HostileName>::new((7,)))
        .await
        .unwrap();
    let seven = hostile_executor
        .wait_for::<u32, String>(named, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(seven, Ok(7));
    hostile_worker.stop().await;
    executor
        .send_signal(
            filled.waiting,
            "<script>alert('signal')</script>",
            &"<img src=x onerror=alert(3)>",
        )
        .await
        .unwrap();
    let live = executor
        .dispatch(common::awaits_approval("doc-live".into()))
        .await
        .unwrap();
    let to_cancel = executor
        .dispatch(common::awaits_approval("doc-cancel".into()))
        .await
        .unwrap();
    let addr = serve(executor.clone()).await;
    let base = format!("http://{addr}/");
    let client = browser(&driver).await;

    // The list, then filtered to the failed ones.
    client.goto(&base).await.unwrap();
    let text = body_text(&client).await;
    assert!(text.contains("Executions"), "{text}");
    assert!(text.contains(&filled.done.to_string()), "{text}");
    no_dialog(&client).await;
    screenshot(&client, "executions").await;
    client
        .find(Locator::Css("nav.counts a[href='./?state=failed']"))
        .await
        .expect("the failed filter")
        .click()
        .await
        .unwrap();
    let text = body_text(&client).await;
    assert!(text.contains(&filled.failed.to_string()), "{text}");
    assert!(!text.contains(&filled.done.to_string()), "{text}");

    // An execution; its child call expands in place.
    client.goto(&base).await.unwrap();
    client
        .find(Locator::Css(&format!(
            "a[href='executions/{}']",
            filled.done
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let child = client
        .find(Locator::Css("ol.waterfall details"))
        .await
        .expect("a child call in the timeline");
    assert!(child.attr("open").await.unwrap().is_none());
    child
        .find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(child.attr("open").await.unwrap().is_some());
    // Its journal is loaded when it is opened.
    eventually("the child's journal to load", || async {
        child.text().await.unwrap().contains("events of")
    })
    .await;
    child
        .find(Locator::Css("details.events summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the child's events to load", || async {
        child.text().await.unwrap().contains("started")
    })
    .await;
    screenshot(&client, "execution").await;

    // Hostile strings stay text, on the list and on their page.
    client
        .goto(&format!("{base}executions/{xss}"))
        .await
        .unwrap();
    no_dialog(&client).await;
    let text = body_text(&client).await;
    assert!(text.contains("<script>alert('err')</script>"), "{text}");
    assert!(text.contains("<img src=x onerror=alert(1)>"), "{text}");
    let injected = client
        .find_all(Locator::Css("main img, main script"))
        .await
        .unwrap();
    assert!(injected.is_empty(), "{} injected elements", injected.len());
    for page in [
        base.clone(),
        format!("{base}executions/{named}"),
        format!("{base}executions/{}", filled.waiting),
    ] {
        client.goto(&page).await.unwrap();
        no_dialog(&client).await;
        let injected = client
            .find_all(Locator::Css("main img, main script"))
            .await
            .unwrap();
        assert!(
            injected.is_empty(),
            "{page}: {} injected elements",
            injected.len()
        );
    }
    let text = body_text(&client).await;
    assert!(text.contains("<script>alert('signal')</script>"), "{text}");
    client
        .goto(&format!("{base}executions/{named}"))
        .await
        .unwrap();
    let text = body_text(&client).await;
    assert!(
        text.contains("evil<script>alert('name')</script>"),
        "{text}"
    );

    // A signal from the form completes the waiting execution.
    let waiting = filled.waiting;
    client
        .goto(&format!("{base}executions/{waiting}"))
        .await
        .unwrap();
    let form = client.form(Locator::Css("form.signal")).await.unwrap();
    form.set_by_name("name", "approval").await.unwrap();
    form.set_by_name("payload", "\"grace\"").await.unwrap();
    // The page asks first.
    submit_confirmed(&client, "form.signal button").await;
    eventually("the signal's banner", || async {
        body_text(&client)
            .await
            .contains("sent signal \"approval\"")
    })
    .await;
    let got = executor
        .wait_for::<String, String>(waiting, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(got, Ok("doc-1 approved by grace".to_string()));

    // A page updates live when the execution changes elsewhere.
    client
        .goto(&format!("{base}executions/{live}"))
        .await
        .unwrap();
    live_connected(&client).await;
    executor
        .send_signal(live, "approval", &"heidi")
        .await
        .unwrap();
    eventually("the page to show completed without a reload", || async {
        let updates = client
            .execute("return document.body.dataset.updates || '0';", vec![])
            .await
            .unwrap();
        updates.as_str() != Some("0") && body_text(&client).await.contains("approved by heidi")
    })
    .await;
    screenshot(&client, "live").await;

    // Cancel from the form, with a reason.
    client
        .goto(&format!("{base}executions/{to_cancel}"))
        .await
        .unwrap();
    let form = client.form(Locator::Css("form.cancel")).await.unwrap();
    form.set_by_name("reason", "duplicate order").await.unwrap();
    // The page asks first.
    submit_confirmed(&client, "form.cancel button").await;
    eventually("the cancellation", || async {
        body_text(&client)
            .await
            .contains("cancelled: duplicate order")
    })
    .await;
    assert_eq!(
        executor.state_of(to_cancel).await.unwrap().state,
        ExecutionStatus::Cancelled
    );

    // Dead letters: one replayed from its button.
    client.goto(&format!("{base}dead-letters")).await.unwrap();
    let text = body_text(&client).await;
    assert!(text.contains(&filled.dead[0].1.to_string()), "{text}");
    screenshot(&client, "dead-letters").await;
    let replay = format!(
        "form[action='dead-letters/{}/replay'] button",
        filled.dead[0].1
    );
    submit_confirmed(&client, &replay).await;
    eventually("the replay's banner", || async {
        body_text(&client).await.contains("replayed task")
    })
    .await;
    // (Its step panics again, so the worker dead-letters it again.)

    // The list updates live: a new execution appears without a reload.
    client.goto(&base).await.unwrap();
    live_connected(&client).await;
    let newcomer = executor
        .dispatch(common::awaits_approval("doc-new".into()))
        .await
        .unwrap();
    eventually("the new execution in the list", || async {
        body_text(&client).await.contains(&newcomer.to_string())
    })
    .await;
    let updates = client
        .execute("return document.body.dataset.updates || '0';", vec![])
        .await
        .unwrap();
    assert_ne!(
        updates.as_str(),
        Some("0"),
        "the list was reloaded, not updated"
    );

    client.close().await.unwrap();
    worker.stop().await;
}
