use std::time::Duration;

use stent_examples::research_agent::{ResearchReport, run};

fn check(report: &ResearchReport, rounds: u32) {
    // Rounds alternate 3 and 2 sources, starting with 3.
    let sources: u32 = (1..=rounds).map(|r| 2 + r % 2).sum();
    assert_eq!(report.findings.notes.len(), sources as usize);
    assert_eq!(report.counters, (f64::from(rounds), f64::from(sources)));
    assert!(
        report.observed.iter().any(|l| l.contains("sleeping")),
        "a durable sleep was observed: {:#?}",
        report.observed
    );
    assert!(
        report.observed.last().unwrap().starts_with("completed"),
        "{:#?}",
        report.observed
    );
}

#[tokio::test(start_paused = true)]
async fn research_agent_sleeps_an_hour_between_rounds_in_memory() {
    let started = tokio::time::Instant::now();
    let report = run(
        &crate::memory(),
        "memory topic",
        3,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    check(&report, 3);
    assert!(started.elapsed() >= Duration::from_secs(2 * 3600));
}

#[tokio::test]
async fn research_agent_on_sqlite() {
    let (executor, dir) = crate::sqlite("research").await;
    let report = run(
        &executor,
        "sqlite topic",
        3,
        Duration::from_millis(500),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    check(&report, 3);
    crate::cleanup(dir);
}
