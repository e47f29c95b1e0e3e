use stent_examples::parallel_scraper::{CrawlReport, FetchError, requests, run};

fn check(report: &CrawlReport, site: &str) {
    let ok: Vec<&str> = report
        .pages
        .iter()
        .map(|p| p.url.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        ok,
        [
            "getting-started",
            "durable-functions",
            "slow",
            "signals",
            "retries"
        ],
        "successes in input order"
    );
    assert_eq!(
        report.failures,
        vec![
            (format!("https://{site}/missing"), FetchError::NotFound),
            (format!("https://{site}/down"), FetchError::Server(503)),
        ]
    );
    assert_eq!(requests(&format!("https://{site}/slow")), 2, "retried once");
    assert_eq!(
        requests(&format!("https://{site}/missing")),
        1,
        "not retried"
    );
    assert_eq!(requests(&format!("https://{site}/down")), 3, "all attempts");
}

#[tokio::test(start_paused = true)]
async fn scraper_reports_successes_and_failures_in_memory() {
    let report = run(&crate::memory(), "memory.test").await.unwrap();
    check(&report, "memory.test");
}

#[tokio::test]
async fn scraper_reports_successes_and_failures_on_sqlite() {
    let (executor, dir) = crate::sqlite("scraper").await;
    let report = run(&executor, "sqlite.test").await.unwrap();
    check(&report, "sqlite.test");
    crate::cleanup(dir);
}
