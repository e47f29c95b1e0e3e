//! Cancellation and deadlines end an execution for good.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{Error, ExecutionStatus, Interruption, Stent};
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
async fn cancelling_cancels_children_and_late_signals_are_refused() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(waits_for_go()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    executor.cancel(id).await.unwrap();
    let late = executor.send_signal(id, "go", &"now").await;
    assert!(
        matches!(late, Err(Error::Ended { id: x, state: ExecutionStatus::Cancelled }) if x == id),
        "{late:?}"
    );
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

/// The last event of an execution's root journal.
async fn last_root_event(executor: &Stent, id: stent::ExecutionId) -> stent::journal::Event {
    let rows = executor
        .backend()
        .read_journal(id.root_invocation(), stent::journal::Seq(0))
        .await
        .unwrap();
    stent::journal::Event::decode(&rows.last().unwrap().bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_records_its_reason_in_the_journal_and_the_state() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(waits_for_go()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A reason longer than 4 KiB is refused, and nothing is cancelled.
    let err = executor
        .cancel_with_reason(id, "x".repeat(5000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Running
    );
    let done = executor
        .cancel_with_reason(id, "customer withdrew (ticket 4411)")
        .await
        .unwrap();
    assert!(done.cancelled);
    let reason = Some("customer withdrew (ticket 4411)".to_string());
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(
        state.interruption,
        Some(Interruption::Cancelled {
            reason: reason.clone()
        })
    );
    assert!(state.waits.is_empty(), "{:?}", state.waits);
    assert_eq!(
        last_root_event(&executor, id).await,
        stent::journal::Event::Cancelled { reason }
    );
    // Without a reason the journal still says it was cancelled.
    let other = executor.dispatch(waits_for_go()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    executor.cancel(other).await.unwrap();
    assert_eq!(
        executor.state_of(other).await.unwrap().interruption,
        Some(Interruption::Cancelled { reason: None })
    );
    assert_eq!(
        last_root_event(&executor, other).await,
        stent::journal::Event::Cancelled { reason: None }
    );
    // The replay debugger replays a cancelled execution up to where it
    // stopped, not as a divergence.
    let report = stent::debugger::Replayer::for_stent(&executor)
        .replay_stored(&executor, id)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    worker.stop().await;
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
        let state = executor.state_of(id).await.unwrap();
        assert_eq!(state.state, ExecutionStatus::TimedOut);
        // The deadline it passed is recorded, in its state and its journal.
        let deadline = executor
            .backend()
            .execution(id)
            .await
            .unwrap()
            .unwrap()
            .deadline
            .expect("a deadline");
        assert_eq!(
            state.interruption,
            Some(Interruption::TimedOut {
                deadline: Some(deadline.to_datetime())
            })
        );
        assert_eq!(
            last_root_event(&executor, id).await,
            stent::journal::Event::TimedOut {
                deadline: Some(deadline)
            }
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

// --- Compensation on cancellation (`Stent::on_cancel`) ---------------------

static UNDONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[stent::durable]
async fn reserve(what: String) -> Result<String, String> {
    Ok(format!("{what}-reserved"))
}

#[stent::durable(retry_policy = stent::RetryPolicy::default().max_attempts(2).initial_delay(Duration::from_millis(10)))]
async fn release(what: String) -> Result<(), String> {
    if what == "broken" {
        return Err("the provider refuses".into());
    }
    UNDONE.lock().unwrap().push(what);
    Ok(())
}

/// Dispatches `booking(items)` and waits until every item is booked.
async fn booked(executor: &Stent, items: Vec<String>) -> stent::ExecutionId {
    let n = items.len();
    let id = executor.dispatch(booking(items)).await.unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while executor.state_of(id).await.unwrap().progress.len() < n {
        assert!(tokio::time::Instant::now() < give_up, "never booked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

/// The report of the compensations run by `undo`.
async fn report_of(
    executor: &Stent,
    undo: stent::ExecutionId,
) -> Result<stent::CompensationReport, stent::CompensationReport> {
    executor
        .wait_for(undo, Some(Duration::from_secs(20)))
        .await
        .unwrap()
}

/// Books three things, registering each undo before its step, then waits.
#[stent::durable]
async fn booking(items: Vec<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in items {
        Stent::on_cancel(release(item.clone())).map_err(|e| e.to_string())?;
        out.push(reserve(item).await?);
    }
    let _: () = Stent::wait_for_signal("confirm")
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test(start_paused = true)]
async fn cancelling_runs_the_registered_compensations_newest_first_once() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let items = vec!["flight-c1".to_string(), "hotel-c1".into(), "car-c1".into()];
    let id = booked(&executor, items).await;

    let outcome = executor.cancel_execution(id).await.unwrap();
    assert!(outcome.cancelled);
    let undo = outcome.compensation.expect("compensations were registered");
    let report = report_of(&executor, undo)
        .await
        .expect("every compensation succeeds");
    assert_eq!(report.cancelled, id);
    assert_eq!(report.completed.len(), 3);
    let undone: Vec<String> = UNDONE
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.ends_with("-c1"))
        .cloned()
        .collect();
    assert_eq!(undone, ["car-c1", "hotel-c1", "flight-c1"], "newest first");
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Cancelled,
        "the cancelled execution stays cancelled"
    );

    // Cancelling again is a no-op: it starts nothing, and names the same
    // compensations.
    let again = executor.cancel_execution(id).await.unwrap();
    assert!(!again.cancelled);
    assert_eq!(again.compensation, Some(undo));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let undone_twice = UNDONE
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.ends_with("-c1"))
        .count();
    assert_eq!(undone_twice, 3, "each compensation ran once");
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_reported_and_the_others_still_run() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let items = vec!["flight-c2".to_string(), "broken".into()];
    let id = booked(&executor, items).await;
    let undo = executor
        .cancel_execution(id)
        .await
        .unwrap()
        .compensation
        .unwrap();
    let report = report_of(&executor, undo)
        .await
        .expect_err("one compensation fails");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].0.ends_with("release"));
    assert!(
        report.failed[0].1.contains("the provider refuses"),
        "{report:?}"
    );
    assert_eq!(report.completed.len(), 1);
    assert!(UNDONE.lock().unwrap().contains(&"flight-c2".to_string()));
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_execution_without_registrations_starts_no_compensation() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(waits_for_go()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = executor.cancel_execution(id).await.unwrap();
    assert!(outcome.cancelled && outcome.compensation.is_none());
    assert!(matches!(
        Stent::on_cancel(release("x".into())),
        Err(Error::NoContext(_))
    ));
    worker.stop().await;
}

/// A cancel whose compensations could not be started (storage failed after
/// the execution was ended: lost before it landed, or landed with its
/// reply lost) is retried by its caller, as any call with an unknown
/// outcome: the retry starts them, or finds them started; they run once.
#[tokio::test(start_paused = true)]
async fn a_retried_cancel_starts_the_compensations_a_storage_fault_kept_from_starting() {
    use stent_tests::CountingBackend;
    use stent_tests::faults::{Call, Trap};
    for (n, landed) in [(2, false), (3, true)] {
        let backend = CountingBackend::new(MemoryBackend::new());
        let executor = Stent::new(backend.clone());
        // A dispatch whose reply was lost leaves the execution leased to
        // the worker that would have started it: claimed again after a lease.
        let worker = TestWorker::start_with(&executor, |w| {
            w.lease_duration(Duration::from_secs(2))
                .heartbeat_interval(Duration::from_millis(500))
        })
        .await;
        let suffix = format!("-retried{n}");
        let items: Vec<String> = ["flight", "hotel"]
            .iter()
            .map(|i| format!("{i}{suffix}"))
            .collect();
        let id = booked(&executor, items).await;
        // The next execution created is the compensations'.
        backend
            .faults
            .arm(Trap::on(Call::CreateExecution).landed(landed));
        let failed = executor.cancel_execution(id).await;
        assert!(failed.is_err(), "the fault reaches the caller: {failed:?}");
        assert_eq!(backend.faults.injected(), 1);
        assert_eq!(
            executor.state_of(id).await.unwrap().state,
            ExecutionStatus::Cancelled
        );
        let retried = executor.cancel_execution(id).await.unwrap();
        assert!(!retried.cancelled, "it was cancelled by the first call");
        let undo = retried
            .compensation
            .expect("the retry names the compensations");
        let report = report_of(&executor, undo)
            .await
            .expect("every compensation succeeds");
        assert_eq!(report.completed.len(), 2, "landed: {landed}");
        // Once more: the same compensations, nothing started again.
        let again = executor.cancel_execution(id).await.unwrap();
        assert_eq!(again.compensation, Some(undo));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let undone: Vec<String> = UNDONE
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.ends_with(&suffix))
            .cloned()
            .collect();
        assert_eq!(
            undone,
            [format!("hotel{suffix}"), format!("flight{suffix}")],
            "each compensation ran once, newest first (landed: {landed})"
        );
        worker.stop().await;
    }
}
