//! `cached`, `idempotent` and `max_concurrent`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::Stent;
use stent::backends::MemoryBackend;
use stent_tests::TestWorker;

static SQUARES: AtomicU32 = AtomicU32::new(0);

#[stent::durable(cached, version = "v1")]
async fn square(x: u64) -> Result<u64, String> {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    Ok(x * x)
}

#[stent::durable]
async fn uses_square(x: u64) -> Result<u64, String> {
    square(x).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_results_are_shared_across_executions() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let t = Some(Duration::from_secs(10));
    let a = executor.dispatch(uses_square(12)).await.unwrap();
    assert_eq!(
        executor.wait_for::<u64, String>(a, t).await.unwrap(),
        Ok(144)
    );
    let b = executor.dispatch(uses_square(12)).await.unwrap();
    assert_eq!(
        executor.wait_for::<u64, String>(b, t).await.unwrap(),
        Ok(144)
    );
    let c = executor.dispatch(uses_square(5)).await.unwrap();
    assert_eq!(
        executor.wait_for::<u64, String>(c, t).await.unwrap(),
        Ok(25)
    );
    assert_eq!(
        SQUARES.load(Ordering::SeqCst),
        2,
        "12 computed once, 5 once"
    );
    let kinds: Vec<String> = executor
        .backend()
        .read_journal(b.root_invocation(), stent_journal::Seq(0))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&"cache_hit".to_string()), "{kinds:?}");
    // The cache hit names the function it answered for.
    let progress = executor.state_of(b).await.unwrap().progress;
    assert!(progress[0].cached, "{progress:?}");
    assert!(
        progress[0]
            .function
            .as_deref()
            .is_some_and(|f| f.ends_with("::square")),
        "{progress:?}"
    );
    worker.stop().await;
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

fn charge_key(customer: String, _note: String) -> String {
    format!("charge:{customer}")
}

#[stent::durable(idempotent, idempotency_key_func = charge_key)]
async fn charge(customer: String, note: String) -> Result<String, String> {
    CHARGES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let key = Stent::idempotency_key()
        .map_err(|e| e.to_string())?
        .ok_or("an idempotent body sees its key")?;
    Ok(format!("receipt for {customer} ({note}) key {key}"))
}

#[stent::durable]
async fn checkout(customer: String, note: String) -> Result<String, String> {
    charge(customer, note).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_body_runs_once_per_key_and_duplicates_wait() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start_with(&executor, |w| {
        w.poll_min_interval(Duration::from_millis(10))
    })
    .await;
    let t = Some(Duration::from_secs(10));
    // Concurrent duplicates with different notes: the key ignores the note.
    let a = executor
        .dispatch(checkout("ada".into(), "first".into()))
        .await
        .unwrap();
    let b = executor
        .dispatch(checkout("ada".into(), "second".into()))
        .await
        .unwrap();
    let ra = executor.wait_for::<String, String>(a, t).await.unwrap();
    let rb = executor.wait_for::<String, String>(b, t).await.unwrap();
    assert_eq!(ra, rb, "the duplicate gets the first run's result");
    assert!(ra.unwrap().ends_with("key charge:ada"));
    let c = executor
        .dispatch(checkout("bob".into(), "x".into()))
        .await
        .unwrap();
    executor
        .wait_for::<String, String>(c, t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        CHARGES.load(Ordering::SeqCst),
        2,
        "once for ada, once for bob"
    );
    worker.stop().await;
}

static RUNNING: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

#[stent::durable(max_concurrent = 2)]
async fn rate_limited(i: u32) -> Result<u32, String> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(i)
}

#[stent::durable]
async fn many_limited(n: u32) -> Result<u32, String> {
    let all = Stent::try_gather((0..n).map(rate_limited)).await?;
    Ok(all.into_iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_across_workers() {
    let executor = Stent::new(MemoryBackend::new());
    let fast = |w: stent::WorkerBuilder| {
        w.poll_min_interval(Duration::from_millis(5))
            .max_concurrency(8)
    };
    let w1 = TestWorker::start_with(&executor, fast).await;
    let w2 = TestWorker::start_with(&executor, fast).await;
    let id = executor.dispatch(many_limited(12)).await.unwrap();
    let out = executor
        .wait_for::<u32, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(out, Ok((0..12).sum()));
    assert!(
        PEAK.load(Ordering::SeqCst) <= 2,
        "peak {}",
        PEAK.load(Ordering::SeqCst)
    );
    assert_eq!(
        PEAK.load(Ordering::SeqCst),
        2,
        "the limit was reached, not undershot"
    );
    w1.stop().await;
    w2.stop().await;
}
