//! A parallel scraper: `Stent::gather` fetches every page at once and
//! returns every outcome — successes and failures — in input order (the
//! seed's `gather(..., return_exceptions=True)`).
//!
//! Each fetch is a durable step with a retry policy that retries only
//! transient errors: a timeout is retried and succeeds, a server that stays
//! down is retried until the attempts run out, a missing page fails at once.
//! A failed page does not fail the crawl: the workflow reports it.
//!
//! ```sh
//! cargo run -p stent-examples --example parallel_scraper
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{RetryPolicy, Stent};

use crate::support::LocalWorker;

/// A fetched page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Its URL.
    pub url: String,
    /// Its title.
    pub title: String,
    /// Its size.
    pub bytes: u64,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchError {
    /// HTTP 404: permanent, not retried.
    NotFound,
    /// HTTP 5xx: retried.
    Server(u16),
    /// No answer in time: retried.
    Timeout,
}

impl FetchError {
    /// True for the errors worth retrying.
    ///
    /// ```
    /// use stent_examples::parallel_scraper::FetchError;
    /// assert!(FetchError::Timeout.is_transient());
    /// assert!(!FetchError::NotFound.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        !matches!(self, FetchError::NotFound)
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("404 not found"),
            FetchError::Server(code) => write!(f, "server error {code}"),
            FetchError::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for FetchError {}

/// The crawl's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlReport {
    /// Pages fetched, in input order.
    pub pages: Vec<Page>,
    /// `(url, error)` of the pages that could not be fetched, in input order.
    pub failures: Vec<(String, FetchError)>,
}

static REQUESTS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// How many requests the fake web server received for `url` in this process.
///
/// ```
/// assert_eq!(stent_examples::parallel_scraper::requests("https://nowhere.test/"), 0);
/// ```
pub fn requests(url: &str) -> u32 {
    REQUESTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(url)
        .copied()
        .unwrap_or(0)
}

/// The fake web: a page whose path ends in `/missing` is a 404, `/down` is
/// a 503 every time, `/slow` times out on its first request only; every
/// other page answers.
fn serve(url: &str) -> Result<Page, FetchError> {
    let n = {
        let mut requests = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
        let n = requests.entry(url.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let path = url.rsplit('/').next().unwrap_or_default();
    match path {
        "missing" => Err(FetchError::NotFound),
        "down" => Err(FetchError::Server(503)),
        "slow" if n == 1 => Err(FetchError::Timeout),
        _ => Ok(Page {
            url: url.to_string(),
            title: format!(
                "{} — {}",
                path.replace('-', " "),
                url.split('/').nth(2).unwrap_or("")
            ),
            bytes: 1_000 + 37 * url.len() as u64,
        }),
    }
}

fn fetch_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(100))
        .backoff_factor(2.0)
        .retry_for(FetchError::is_transient)
}

/// Fetches one page (20 ms of simulated network), retrying transient errors
/// up to three attempts.
#[stent::durable(retry_policy = fetch_policy())]
pub async fn fetch_page(url: String) -> Result<Page, FetchError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let outcome = serve(&url);
    match &outcome {
        Ok(page) => println!("  GET {url} -> 200, {} bytes", page.bytes),
        Err(e) if e.is_transient() => {
            println!("  GET {url} -> {e} (transient: retried while attempts remain)")
        }
        Err(e) => println!("  GET {url} -> {e} (permanent)"),
    }
    outcome
}

/// The workflow: fetches every URL in parallel and sorts the outcomes into
/// pages and failures; counts them in the counters `pages_ok` and
/// `pages_failed`.
#[stent::durable]
pub async fn crawl(urls: Vec<String>) -> Result<CrawlReport, String> {
    let outcomes = Stent::gather(urls.iter().map(|u| fetch_page(u.clone()))).await;
    let mut report = CrawlReport {
        pages: Vec::new(),
        failures: Vec::new(),
    };
    for (url, outcome) in urls.into_iter().zip(outcomes) {
        match outcome {
            Ok(page) => report.pages.push(page),
            Err(e) => report.failures.push((url, e)),
        }
    }
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    ctx.counters("pages_ok")
        .add(report.pages.len() as u32)
        .map_err(|e| e.to_string())?;
    ctx.counters("pages_failed")
        .add(report.failures.len() as u32)
        .map_err(|e| e.to_string())?;
    Ok(report)
}

/// The URLs of the example on `site`: four good pages, one slow (times out
/// once), one missing, one on a server that stays down.
///
/// ```
/// let urls = stent_examples::parallel_scraper::urls("docs.example");
/// assert_eq!(urls.len(), 7);
/// ```
pub fn urls(site: &str) -> Vec<String> {
    [
        "getting-started",
        "durable-functions",
        "slow",
        "missing",
        "signals",
        "down",
        "retries",
    ]
    .iter()
    .map(|p| format!("https://{site}/{p}"))
    .collect()
}

/// Runs the example: crawls [`urls`]`(site)` and prints the report.
pub async fn run(executor: &Stent, site: &str) -> crate::Result<CrawlReport> {
    let worker = LocalWorker::start(executor, |w| w).await;
    let urls = urls(site);
    println!("crawling {} pages of {site} in parallel", urls.len());
    let id = executor.dispatch(crawl(urls)).await?;
    let report = executor
        .wait_for::<CrawlReport, String>(id, Some(Duration::from_secs(60)))
        .await??;
    let state = executor.state_of(id).await?;
    println!(
        "crawl finished: {} pages, {} failures ({}; {} retries)",
        report.pages.len(),
        report.failures.len(),
        state.progress_str,
        state.retries
    );
    for page in &report.pages {
        println!("  ok    {:<40} {:?}", page.url, page.title);
    }
    for (url, error) in &report.failures {
        println!(
            "  FAIL  {url:<40} {error} after {} request(s)",
            requests(url)
        );
    }
    worker.stop().await?;
    Ok(report)
}
