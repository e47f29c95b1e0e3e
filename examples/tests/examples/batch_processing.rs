use std::time::Duration;

use stent_examples::batch_processing::{BatchReport, MAX_CONCURRENT, run};

fn check(report: &BatchReport, count: u64) {
    assert_eq!(report.summary.items, count);
    assert_eq!(report.processed, count as f64, "each item counted once");
    assert_eq!(report.progress_str, format!("{count}/{count} calls done"));
    assert!(
        report.progress_lines >= 2,
        "progress was printed while it ran"
    );
    let expected: u64 = (0..count)
        .map(|id| id.wrapping_mul(2_654_435_761) % 1000)
        .sum();
    assert_eq!(report.summary.total_score, expected);
    assert!(
        (2..=MAX_CONCURRENT).contains(&report.peak_concurrency),
        "the limit of {MAX_CONCURRENT} held: {}",
        report.peak_concurrency
    );
}

#[tokio::test(start_paused = true)]
async fn batch_of_500_items_in_memory() {
    let report = run(&crate::memory(), "memory", 500, Duration::from_millis(10))
        .await
        .unwrap();
    check(&report, 500);
}

#[tokio::test]
async fn batch_of_200_items_on_sqlite() {
    let (executor, dir) = crate::sqlite("batch").await;
    let report = run(&executor, "sqlite", 200, Duration::from_millis(50))
        .await
        .unwrap();
    check(&report, 200);
    crate::cleanup(dir);
}

#[test]
fn the_declared_limit_matches_max_concurrent() {
    // `max_concurrent` takes a literal; make sure it agrees with the constant.
    let limits = stent::FunctionRegistry::global().concurrency_limits();
    assert!(
        limits
            .iter()
            .any(|(name, n)| name.ends_with("::enrich_record") && *n == MAX_CONCURRENT),
        "{limits:?}"
    );
}
