//! Cancellation and deadlines end an execution for good.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{Error, ExecutionStatus, Stent};
use stent_tests::TestWorker;

static TICKS: AtomicU32 = AtomicU32::new(0);

#[stent::durable]
async fn tick(i: u32) -> Result<u32, String> {
    TICKS.fetch_add(1, Ordering::SeqCst);
    Ok(i)
}

#[stent::durable]
async fn ticker() -> Result<u32, String> {
    let mut i = 0;
    loop {
        i = tick(i).await? + 1;
        Stent::sleep("1s").await.map_err(|e| e.to_string())?;
    }
}

#[stent::durable]
async fn waits_for_go() -> Result<String, String> {
    let child = waits_child().await?;
    Ok(child)
}

#[stent::durable]
async fn waits_child() -> Result<String, String> {
    Stent::wait_for_signal::<String>("go")
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_execution_stops_and_never_completes() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(ticker()).await.unwrap();
    while TICKS.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(executor.cancel(id).await.unwrap());
    assert!(
        !executor.cancel(id).await.unwrap(),
        "cancelling twice is a no-op"
    );
    let at_cancel = TICKS.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // It stopped at its next durable point: at most the step in flight ran.
    assert!(TICKS.load(Ordering::SeqCst) <= at_cancel + 1);
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Cancelled
    );
    assert!(matches!(
        executor.wait_for::<u32, String>(id, None).await,
        Err(Error::Cancelled(x)) if x == id
    ));
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_cancels_children_and_late_signals_change_nothing() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(waits_for_go()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    executor.cancel(id).await.unwrap();
    executor.send_signal(id, "go", &"now").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Cancelled
    );
    assert_eq!(
        executor.queue_depth(None).await.unwrap(),
        0,
        "no task of it is runnable"
    );
    worker.stop().await;
}

#[tokio::test]
async fn cancelling_an_unknown_execution_is_not_found() {
    let executor = Stent::new(MemoryBackend::new());
    let ghost = stent::ExecutionId::new_random();
    assert!(matches!(executor.cancel(ghost).await, Err(Error::NotFound(x)) if x == ghost));
}

#[stent::durable]
async fn sleeps_an_hour() -> Result<(), String> {
    Stent::sleep("1h").await.map_err(|e| e.to_string())
}

#[stent::durable]
async fn slow_io_step() -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_execution_past_its_expiry_times_out() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let parked = executor
        .dispatch(sleeps_an_hour())
        .expiry("2s")
        .await
        .unwrap();
    let busy = executor
        .dispatch(slow_io_step())
        .max_duration("3s")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    for id in [parked, busy] {
        let err = executor.wait_for::<(), String>(id, None).await.unwrap_err();
        assert!(matches!(err, Error::TimedOut(x) if x == id), "{err}");
        assert_eq!(
            executor.state_of(id).await.unwrap().state,
            ExecutionStatus::TimedOut
        );
    }
    // Both ended at their deadlines, not after the hour.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    worker.stop().await;
}
