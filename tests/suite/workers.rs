//! Workers: slots, routing, prompt wake-ups, draining and cleanup.

use std::sync::Mutex;
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{Error, FunctionRegistry, Stent};
use stent_tests::TestWorker;

#[stent::durable]
async fn leaf(i: u64) -> Result<u64, String> {
    Ok(i)
}

#[stent::durable]
async fn gather_n(n: u64) -> Result<u64, String> {
    let all = Stent::try_gather((0..n).map(leaf)).await?;
    Ok(all.into_iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_runs_a_workflow_gathering_many_children() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start_with(&executor, |w| w.max_concurrency(1)).await;
    let id = executor.dispatch(gather_n(30)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok((0..30).sum()));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gathering_workflows_on_four_slots_complete_and_the_worker_keeps_serving() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start_with(&executor, |w| w.max_concurrency(4)).await;
    let t = Some(Duration::from_secs(10));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(executor.dispatch(gather_n(20)).await.unwrap());
    }
    for id in ids {
        assert_eq!(
            executor.wait_for::<u64, String>(id, t).await.unwrap(),
            Ok(190)
        );
    }
    let after = executor.dispatch(leaf(7)).await.unwrap();
    assert_eq!(
        executor.wait_for::<u64, String>(after, t).await.unwrap(),
        Ok(7)
    );
    worker.stop().await;
}

#[stent::durable(max_concurrent = 100)]
async fn claimed_only(i: u64) -> Result<u64, String> {
    Ok(i + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_and_waiters_wake_at_once_not_at_their_poll_interval() {
    // Polling every minute: only in-process wake-ups can make this fast
    // (asked for explicitly, so STENT_NOTIFICATIONS=none does not apply).
    let executor = Stent::builder(MemoryBackend::new())
        .notification_backend(stent::notifications::InProcessNotifier)
        .poll_min_interval(Duration::from_secs(60))
        .poll_max_interval(Duration::from_secs(60))
        .build();
    let worker =
        TestWorker::start_with(&executor, |w| w.poll_min_interval(Duration::from_secs(60))).await;
    // Give the worker time to go idle on its (long) poll.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // `claimed_only` has a limit, so it is not handed over at dispatch: the
    // idle worker must be woken to claim it.
    let id = executor.dispatch(claimed_only(1)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(5)))
        .await
        .expect("woken long before the 60 s poll");
    assert_eq!(out, Ok(2));
    worker.stop().await;
}

static ORDER: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[stent::durable]
async fn record_order(i: u64) -> Result<(), String> {
    ORDER.lock().unwrap().push(i);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first_and_queues_route_work() {
    let executor = Stent::new(MemoryBackend::new());
    // Dispatched while no worker runs: they wait in storage.
    let low = executor
        .dispatch(record_order(1))
        .priority(1)
        .await
        .unwrap();
    let high = executor
        .dispatch(record_order(9))
        .priority(9)
        .await
        .unwrap();
    let mid = executor
        .dispatch(record_order(5))
        .priority(5)
        .await
        .unwrap();
    let elsewhere = executor
        .dispatch(record_order(100))
        .queue("reports")
        .await
        .unwrap();

    let worker =
        TestWorker::start_with(&executor, |w| w.max_concurrency(1).queues(["default"])).await;
    let t = Some(Duration::from_secs(10));
    for id in [low, high, mid] {
        executor
            .wait_for::<(), String>(id, t)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(*ORDER.lock().unwrap(), vec![9, 5, 1]);
    // The "reports" queue is not served by this worker.
    assert!(matches!(
        executor.result_of::<(), String>(elsewhere).await,
        Err(Error::StillRunning { .. })
    ));
    assert_eq!(executor.queue_depth(Some("reports")).await.unwrap(), 1);
    let reports = TestWorker::start_with(&executor, |w| w.queues(["reports"])).await;
    executor
        .wait_for::<(), String>(elsewhere, t)
        .await
        .unwrap()
        .unwrap();
    worker.stop().await;
    reports.stop().await;
}

#[stent::durable]
async fn only_elsewhere(i: u64) -> Result<u64, String> {
    Ok(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_claims_a_function_it_has_not_registered() {
    let backend = MemoryBackend::new();
    let dispatcher = Stent::new(backend.clone());
    let mut registry = FunctionRegistry::new();
    registry.register(leaf);
    let narrow = Stent::builder(backend).function_registry(registry).build();
    let worker =
        TestWorker::start_with(&narrow, |w| w.poll_min_interval(Duration::from_millis(10))).await;
    let id = dispatcher.dispatch(only_elsewhere(3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dispatcher.queue_depth(None).await.unwrap(), 1);
    assert!(matches!(
        dispatcher.result_of::<u64, String>(id).await,
        Err(Error::StillRunning { .. })
    ));
    worker.stop().await;
}

#[stent::durable]
async fn naps() -> Result<u32, String> {
    Stent::sleep("10m").await.map_err(|e| e.to_string())?;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn draining_parks_waiting_work_and_another_worker_finishes_it() {
    let executor = Stent::new(MemoryBackend::new());
    let first = TestWorker::start(&executor).await;
    let id = executor.dispatch(naps()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.stop().await; // returns although the workflow sleeps for 10 minutes
    let second = TestWorker::start(&executor).await;
    let out = executor.wait_for::<u32, String>(id, None).await.unwrap();
    assert_eq!(out, Ok(1));
    second.stop().await;
}

#[stent::durable]
async fn waits_forever() -> Result<String, String> {
    Stent::wait_for_signal::<String>("never")
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn cleanup_deletes_finished_executions_after_the_retention_period() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start_with(&executor, |w| {
        w.cleanup_interval(Some(Duration::from_secs(600)))
            .retention_period(Duration::from_secs(3600))
    })
    .await;
    let done = executor.dispatch(leaf(1)).await.unwrap();
    executor
        .wait_for::<u64, String>(done, None)
        .await
        .unwrap()
        .unwrap();
    let waiting = executor.dispatch(waits_forever()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert!(
        executor.state_of(done).await.is_ok(),
        "kept within the retention period"
    );
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    assert!(matches!(
        executor.state_of(done).await,
        Err(Error::NotFound(_))
    ));
    // Not finished: never cleaned up, however old.
    assert!(executor.state_of(waiting).await.is_ok());
    worker.stop().await;
}

// ---------------------------------------------------------------------------
// A call no live worker serves is logged, once per function.

#[stent::durable]
async fn nobody_serves(i: u64) -> Result<u64, String> {
    Ok(i)
}

#[stent::durable]
async fn calls_nobody(i: u64) -> Result<u64, String> {
    nobody_serves(i).await
}

/// Collects the messages of WARN events (with their fields).
struct WarnLog(std::sync::Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for WarnLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// One runtime thread, so the subscriber set for it sees the worker's tasks.
#[tokio::test(start_paused = true)]
async fn a_call_no_worker_serves_is_logged_once_per_function() {
    let log = std::sync::Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(WarnLog(log.clone()));
    let mut registry = FunctionRegistry::new();
    registry.register(calls_nobody);
    let executor = Stent::builder(MemoryBackend::new())
        .function_registry(registry)
        .build();
    let worker = TestWorker::start(&executor).await;
    let first = executor.dispatch(calls_nobody(1)).await.unwrap();
    let second = executor.dispatch(calls_nobody(2)).await.unwrap();
    let unserved = |state: &stent::ExecutionState| {
        state.waits.iter().any(|w| {
            matches!(
                &w.what,
                stent::Waiting::Call { task: stent::CallTask::Unserved { .. }, function, .. }
                    if function.ends_with("nobody_serves")
            )
        })
    };
    for id in [first, second] {
        let mut seen = false;
        for _ in 0..200 {
            if unserved(&executor.state_of(id).await.unwrap()) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen, "{:?}", executor.state_of(id).await.unwrap().waits);
    }
    let warnings: Vec<String> = log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m.contains("no live worker serves"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("nobody_serves"), "{warnings:?}");
    worker.stop().await;
}
