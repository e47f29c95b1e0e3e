use stent_examples::media_pipeline::{MediaReport, VARIANTS, run};

fn check(report: &MediaReport, channel: &str, video: &str) {
    assert_eq!(
        report.first.url,
        format!("https://videos.example/{channel}/{video}")
    );
    assert_eq!(report.first, report.second, "same input, same output");
    assert_eq!(report.first.renditions.len(), VARIANTS.len());
    assert!(
        report.dead_letter_reason.contains("thumbnailer bug"),
        "{}",
        report.dead_letter_reason
    );
    assert_eq!(report.stage_at_dead_letter.as_deref(), Some("thumbnail"));
    assert_eq!(report.first_retries, 2, "two download retries");
    assert_eq!(report.second_cache_hits, VARIANTS.len());
    // download: 3 attempts in run 1 + 1 in run 2; transcode: 3 in run 1, none
    // in run 2 (cache); thumbnail: 2 panics + 1 after the replay + 1 in run 2;
    // publish: once per run. The replay did not repeat download or transcode.
    assert_eq!(report.stage_runs, (4, 3, 4, 2));
}

#[tokio::test(start_paused = true)]
async fn media_pipeline_retries_dead_letters_replays_and_caches_in_memory() {
    let report = run(&crate::memory(), "test-memory", "clip.mov")
        .await
        .unwrap();
    check(&report, "test-memory", "clip.mov");
}

#[tokio::test]
async fn media_pipeline_retries_dead_letters_replays_and_caches_on_sqlite() {
    let (executor, dir) = crate::sqlite("media").await;
    let report = run(&executor, "test-sqlite", "clip.mov").await.unwrap();
    check(&report, "test-sqlite", "clip.mov");
    crate::cleanup(dir);
}
