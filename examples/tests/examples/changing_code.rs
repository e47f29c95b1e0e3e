//! The changing-code example on the in-memory backend and on SQLite: the
//! orders v1 started finish by truck on v2, the order v2 started flies, and
//! the deploy check refuses v2 without its patch.

use stent::backends::MemoryBackend;
use stent_examples::changing_code::{Outcome, run};

fn check(outcome: &Outcome, first: u64) {
    assert_eq!(
        outcome.started_on_v1,
        vec![
            format!("order {first} shipped by truck T-{first}, packed by ada"),
            format!(
                "order {} shipped by truck T-{}, packed by ada",
                first + 1,
                first + 1
            ),
        ]
    );
    assert_eq!(
        outcome.started_on_v2,
        vec![format!(
            "order {} shipped by flight F-{}, packed by bob",
            first + 2,
            first + 2
        )]
    );
    assert_eq!(outcome.unpatched_would_pause, 2);
    assert_eq!(outcome.checked_against_v2, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_code_on_memory() {
    let backend = MemoryBackend::new();
    let outcome = run(&backend, 10).await.expect("the example runs");
    check(&outcome, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_code_on_sqlite() {
    let dir = stent_examples::support::temp_dir("changing-code").expect("temp dir");
    let backend = stent::backends::SqliteBackend::open(dir.join("stent.db"))
        .await
        .expect("open");
    backend.init_db().await.expect("schema");
    let outcome = run(&backend, 20).await.expect("the example runs");
    check(&outcome, 20);
    super::cleanup(dir);
}
