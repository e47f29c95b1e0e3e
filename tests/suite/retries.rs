//! Retries, typed permanent failures, dead letters and crash loops.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::backends::MemoryBackend;
use stent::{Error, ExecutionStatus, RetryPolicy, Stent};
use stent_journal::WorkerId;
use stent_journal::store::{ClaimRequest, TaskStore};
use stent_tests::TestWorker;

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(max_attempts)
        .initial_delay(Duration::from_secs(1))
        .backoff_factor(2.0)
        .max_delay(Duration::from_secs(10))
        .jitter(0.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ApiError {
    Timeout,
    BadRequest(String),
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable(retry_policy = policy(5))]
async fn flaky() -> Result<u32, ApiError> {
    let n = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 { Err(ApiError::Timeout) } else { Ok(n) }
}

#[stent::durable]
async fn calls_flaky() -> Result<u32, ApiError> {
    flaky().await
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_until_it_succeeds() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let started = tokio::time::Instant::now();
    let id = executor.dispatch(calls_flaky()).await.unwrap();
    let out = executor.wait_for::<u32, ApiError>(id, None).await.unwrap();
    assert_eq!(out, Ok(3));
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 3);
    // Delays of 1 s then 2 s were honoured through the task's run time.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(executor.state_of(id).await.unwrap().retries, 2);
    worker.stop().await;
}

static ALWAYS_RUNS: AtomicU32 = AtomicU32::new(0);
static BEFORE_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable(retry_policy = policy(4))]
async fn always_fails(x: u32) -> Result<u32, ApiError> {
    ALWAYS_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::BadRequest(format!("no {x}")))
}

#[stent::durable]
async fn before_step() -> Result<u32, ApiError> {
    BEFORE_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[stent::durable]
async fn parent_of_failure() -> Result<String, ApiError> {
    before_step().await?;
    match always_fails(7).await {
        Ok(_) => Ok("impossible".into()),
        Err(e) => Ok(format!("handled {e:?}")),
    }
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_surfaces_once_as_a_typed_error() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(parent_of_failure()).await.unwrap();
    let out = executor
        .wait_for::<String, ApiError>(id, None)
        .await
        .unwrap();
    assert_eq!(out, Ok("handled BadRequest(\"no 7\")".to_string()));
    assert_eq!(
        ALWAYS_RUNS.load(Ordering::SeqCst),
        4,
        "exactly max_attempts runs"
    );
    assert_eq!(
        BEFORE_RUNS.load(Ordering::SeqCst),
        1,
        "the parent was not re-run"
    );
    worker.stop().await;
}

static SELECTIVE_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable(retry_policy = policy(5).retry_for(|e: &ApiError| matches!(e, ApiError::Timeout)))]
async fn selective() -> Result<u32, ApiError> {
    SELECTIVE_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::BadRequest("invalid".into()))
}

#[tokio::test(start_paused = true)]
async fn retry_for_stops_non_retryable_errors_at_once() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(selective()).await.unwrap();
    let out = executor.wait_for::<u32, ApiError>(id, None).await.unwrap();
    assert_eq!(out, Err(ApiError::BadRequest("invalid".into())));
    assert_eq!(SELECTIVE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Failed
    );
    worker.stop().await;
}

static FIXED: AtomicU32 = AtomicU32::new(0);
static PREP_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable]
async fn prepare() -> Result<u32, String> {
    PREP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(10)
}

#[stent::durable]
async fn buggy(x: u32) -> Result<u32, String> {
    if FIXED.load(Ordering::SeqCst) == 0 {
        panic!("bug in buggy({x})");
    }
    Ok(x + 1)
}

#[stent::durable]
async fn uses_buggy() -> Result<u32, String> {
    let x = prepare().await?;
    buggy(x).await
}

#[tokio::test(start_paused = true)]
async fn a_panicking_call_is_dead_lettered_and_replays_from_where_it_stopped() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(uses_buggy()).await.unwrap();
    let letter = loop {
        if let Some(l) = executor.list_dead_letters(10).await.unwrap().pop() {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        letter.reason.contains("bug in buggy(10)"),
        "{}",
        letter.reason
    );
    assert!(letter.function.ends_with("::buggy"));
    assert_eq!(letter.execution, id);
    assert_eq!(
        executor
            .get_dead_letter(letter.task)
            .await
            .unwrap()
            .as_ref(),
        Some(&letter)
    );
    // The caller waits; nothing completes on its own.
    assert!(matches!(
        executor.result_of::<u32, String>(id).await,
        Err(Error::StillRunning { .. })
    ));

    FIXED.store(1, Ordering::SeqCst);
    executor
        .replay_dead_letter(letter.task, None, true)
        .await
        .unwrap();
    let out = executor.wait_for::<u32, String>(id, None).await.unwrap();
    assert_eq!(out, Ok(11));
    assert_eq!(
        PREP_RUNS.load(Ordering::SeqCst),
        1,
        "completed steps are not repeated"
    );
    assert!(executor.list_dead_letters(10).await.unwrap().is_empty());
    worker.stop().await;
}

#[stent::durable]
async fn always_panics() -> Result<u32, String> {
    panic!("hopeless")
}

#[stent::durable]
async fn uses_hopeless() -> Result<u32, String> {
    always_panics().await
}

#[tokio::test(start_paused = true)]
async fn discarding_a_dead_letter_fails_the_caller() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(uses_hopeless()).await.unwrap();
    let letter = loop {
        if let Some(l) = executor.list_dead_letters(10).await.unwrap().pop() {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(executor.discard_dead_letter(letter.task).await.unwrap());
    assert!(!executor.discard_dead_letter(letter.task).await.unwrap());
    let err = executor
        .wait_for::<u32, String>(id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ExecutionFailed { message, .. } if message.contains("discarded")),
        "{err}"
    );
    worker.stop().await;
}

#[stent::durable(retry_policy = policy(2))]
async fn kills_its_worker() -> Result<u32, String> {
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn a_task_that_keeps_killing_its_worker_is_dead_lettered_not_retried_forever() {
    let backend = MemoryBackend::new();
    let executor = Stent::new(backend.clone());
    let id = executor.dispatch(kills_its_worker()).await.unwrap();
    // Two workers claim it and die before committing anything.
    for attempt in 1..=2 {
        let now = executor.clock_now();
        let claimed = backend
            .claim(ClaimRequest {
                worker: WorkerId::new(format!("doomed-{attempt}")),
                now,
                lease_until: now, // dies at once: the lease is already over
                limit: 1,
                queues: None,
                tags: None,
                functions: executor.registry().names(),
                concurrency_limits: Vec::new(),
                code_version: None,
                also_runs: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempts, attempt);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The third claim exceeds max_attempts = 2: dead-lettered, not run.
    let worker = TestWorker::start(&executor).await;
    let letter = loop {
        if let Some(l) = executor.list_dead_letters(10).await.unwrap().pop() {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(letter.execution, id);
    assert!(letter.reason.contains("3 times"), "{}", letter.reason);
    worker.stop().await;
}

static QUICK_RUNS: AtomicU32 = AtomicU32::new(0);

fn short_backoff() -> RetryPolicy {
    RetryPolicy::default().max_attempts(2).initial_delay(Duration::from_millis(200))
}

#[stent::durable(retry_policy = short_backoff())]
async fn quick_retry() -> Result<u32, String> {
    if QUICK_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        Err("once".into())
    } else {
        Ok(7)
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_runs_when_its_delay_is_over_not_at_the_next_idle_poll() {
    // In-process wake-ups even under STENT_NOTIFICATIONS=none: the waiter
    // must not be slowed by its own polling either.
    let executor = Stent::builder(MemoryBackend::new())
        .notification_backend(stent::notifications::InProcessNotifier)
        .build();
    // Idle polls every 30 s: the retry must not wait for one.
    let worker =
        TestWorker::start_with(&executor, |w| w.poll_min_interval(Duration::from_secs(30))).await;
    let started = tokio::time::Instant::now();
    let id = executor.dispatch(quick_retry()).await.unwrap();
    assert_eq!(
        executor.wait_for::<u32, String>(id, None).await.unwrap(),
        Ok(7)
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    worker.stop().await;
}
