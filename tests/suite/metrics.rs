//! The metrics recorder hears about claims, starts, completions, failures,
//! retries and dead letters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{MetricsRecorder, RetryPolicy, Stent};
use stent_tests::TestWorker;

#[derive(Default, Clone)]
struct Recorded(Arc<Mutex<BTreeMap<String, u32>>>);

impl Recorded {
    fn add(&self, what: &str, function: &str) {
        let short = function.rsplit("::").next().unwrap_or(function);
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{what} {short}"))
            .or_default() += 1;
    }
    fn get(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl MetricsRecorder for Recorded {
    fn invocation_started(&self, function: &str) {
        self.add("started", function);
    }
    fn invocation_completed(&self, function: &str, _took: Duration) {
        self.add("completed", function);
    }
    fn invocation_failed(&self, function: &str, _took: Duration) {
        self.add("failed", function);
    }
    fn invocation_retried(&self, function: &str) {
        self.add("retried", function);
    }
    fn invocation_dead_lettered(&self, function: &str) {
        self.add("dead_lettered", function);
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

fn twice() -> RetryPolicy {
    RetryPolicy::default().max_attempts(2).initial_delay(Duration::from_millis(100))
}

#[stent::durable(retry_policy = twice())]
async fn wobbly() -> Result<u32, String> {
    if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        Err("first time".into())
    } else {
        Ok(1)
    }
}

#[stent::durable]
async fn refuses() -> Result<u32, String> {
    Err("no".into())
}

#[stent::durable]
async fn measured() -> Result<u32, String> {
    let a = wobbly().await?;
    let b = refuses().await.unwrap_or(10);
    Ok(a + b)
}

#[tokio::test(start_paused = true)]
async fn every_outcome_is_reported() {
    let recorded = Recorded::default();
    let executor = Stent::builder(MemoryBackend::new())
        .metrics(recorded.clone())
        .build();
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(measured()).await.unwrap();
    assert_eq!(
        executor.wait_for::<u32, String>(id, None).await.unwrap(),
        Ok(11)
    );
    worker.stop().await;
    assert_eq!(recorded.get("completed measured"), 1);
    assert_eq!(recorded.get("retried wobbly"), 1);
    assert_eq!(recorded.get("completed wobbly"), 1);
    assert_eq!(
        recorded.get("started wobbly"),
        2,
        "first attempt, then the retry"
    );
    assert_eq!(recorded.get("failed refuses"), 1);
    assert_eq!(recorded.get("dead_lettered wobbly"), 0);
}
