use stent_examples::approval::{ApprovalReport, Decision, run};

fn check(report: &ApprovalReport, suffix: &str) {
    assert_eq!(
        report.decisions,
        vec![
            Decision::Approved {
                by: "Margaret".into(),
                payment: format!("PAY-EXP-1{suffix}"),
            },
            Decision::Rejected {
                by: "Margaret".into(),
                comment: "over the team budget".into(),
            },
            Decision::Expired,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn approve_reject_and_expire_in_memory_with_a_48h_timeout() {
    let started = tokio::time::Instant::now();
    let report = run(&crate::memory(), "-mem", "48h").await.unwrap();
    check(&report, "-mem");
    assert!(started.elapsed() >= std::time::Duration::from_secs(48 * 3600));
}

#[tokio::test]
async fn approve_reject_and_expire_on_sqlite() {
    let (executor, dir) = crate::sqlite("approval").await;
    let report = run(&executor, "-sqlite", "1s").await.unwrap();
    check(&report, "-sqlite");
    crate::cleanup(dir);
}
