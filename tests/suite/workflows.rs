//! Workflows end to end on the memory backend: nested calls, typed errors,
//! durable sleeps, signals, linear cost.

use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{ExecutionStatus, Stent};
use stent_tests::CountingBackend;
use stent_tests::TestWorker;

#[stent::durable]
async fn double(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[stent::durable]
async fn refuse(x: u64) -> Result<u64, String> {
    Err(format!("refused {x}"))
}

#[stent::durable]
async fn pipeline(n: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..n {
        acc += double(i).await?;
    }
    Ok(acc)
}

#[stent::durable]
async fn nested(n: u64) -> Result<u64, String> {
    let a = pipeline(n).await?;
    let b = double(a).await?;
    Ok(b)
}

#[stent::durable]
async fn catches(x: u64) -> Result<String, String> {
    match refuse(x).await {
        Ok(_) => Ok("impossible".into()),
        Err(e) => Ok(format!("caught: {e}")),
    }
}

#[stent::durable]
async fn sleeper() -> Result<String, String> {
    Stent::sleep("1h").await.map_err(|e| e.to_string())?;
    Ok("woke".to_string())
}

#[stent::durable]
async fn fan_out(n: u64) -> Result<u64, String> {
    let results = Stent::gather((0..n).map(double)).await;
    results.into_iter().sum::<Result<u64, String>>()
}

#[stent::durable]
async fn approval() -> Result<Vec<String>, String> {
    let a: String = Stent::wait_for_signal("vote")
        .await
        .map_err(|e| e.to_string())?;
    let b: String = Stent::wait_for_signal("vote")
        .await
        .map_err(|e| e.to_string())?;
    Ok(vec![a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_return_the_right_result() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(pipeline(10)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok(90));
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Completed
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_and_typed_errors() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let a = executor.dispatch(nested(4)).await.unwrap();
    let b = executor.dispatch(catches(3)).await.unwrap();
    let c = executor.dispatch(refuse(5)).await.unwrap();
    let t = Some(Duration::from_secs(10));
    assert_eq!(
        executor.wait_for::<u64, String>(a, t).await.unwrap(),
        Ok(24)
    );
    assert_eq!(
        executor.wait_for::<String, String>(b, t).await.unwrap(),
        Ok("caught: refused 3".to_string())
    );
    assert_eq!(
        executor.wait_for::<u64, String>(c, t).await.unwrap(),
        Err("refused 5".to_string())
    );
    assert_eq!(
        executor.state_of(c).await.unwrap().state,
        ExecutionStatus::Failed
    );
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_durable_sleep_parks_and_resumes_in_virtual_time() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(sleeper()).await.unwrap();
    let out = executor.wait_for::<String, String>(id, None).await.unwrap();
    assert_eq!(out, Ok("woke".to_string()));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_runs_children_in_parallel_and_keeps_order() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(fan_out(50)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok((0..50).map(|x| x * 2).sum()));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_and_after_the_wait_arrive_once_in_order() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(approval()).await.unwrap();
    // Sent before any worker runs: kept.
    executor.send_signal(id, "vote", &"first").await.unwrap();
    let worker = TestWorker::start(&executor).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    executor.send_signal(id, "vote", &"second").await.unwrap();
    // One too many: kept if the execution still runs, refused once it ended.
    match executor.send_signal(id, "vote", &"third").await {
        Ok(()) | Err(stent::Error::Ended { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    let out = executor
        .wait_for::<Vec<String>, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok(vec!["first".to_string(), "second".to_string()]));
    worker.stop().await;
}

#[tokio::test]
async fn signal_to_an_unknown_execution_is_not_found() {
    let executor = Stent::new(MemoryBackend::new());
    let ghost = stent::ExecutionId::new_random();
    let err = executor.send_signal(ghost, "x", &1).await.unwrap_err();
    assert!(
        matches!(err, stent::Error::NotFound(id) if id == ghost),
        "{err}"
    );
}

#[tokio::test]
async fn dispatch_rejects_conflicting_and_malformed_options() {
    let executor = Stent::new(MemoryBackend::new());
    let err = executor
        .dispatch(double(1))
        .expiry("1h")
        .max_duration("2h")
        .await
        .unwrap_err();
    assert!(matches!(err, stent::Error::InvalidConfig(_)), "{err}");
    let err = executor
        .dispatch(double(1))
        .delay("1h 30m")
        .await
        .unwrap_err();
    assert!(matches!(err, stent::Error::InvalidDuration(_)), "{err}");
    // A deadline that passes before the execution may start.
    let err = executor
        .dispatch(double(1))
        .delay("90s")
        .expiry("1m")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, stent::Error::InvalidConfig(m) if m.contains("must be longer than delay")),
        "{err}"
    );
    assert!(
        executor
            .list_executions(10, 0, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The duration parser is there beside DurationSpec.
    assert_eq!(
        stent::parse_duration("1h30m").unwrap(),
        std::time::Duration::from_secs(5400)
    );
    // Unknown dead letters are a typed not-found; a default task filter
    // lists a page.
    let ghost = stent::ExecutionId::new_random().root_invocation();
    let err = executor
        .replay_dead_letter(ghost, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, stent::Error::DeadLetterNotFound(t) if t == ghost),
        "{err}"
    );
    executor.dispatch(double(2)).await.unwrap();
    let tasks = executor
        .list_tasks(stent::TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dispatch_key_names_one_call_and_a_retry_creates_nothing() {
    let executor = Stent::new(MemoryBackend::new());
    let first = executor.dispatch(pipeline(3)).key("order-7").await.unwrap();
    assert_eq!(first, stent::ExecutionId::from_key("order-7"));
    // The same call again, before and after it ran: the same execution.
    let again = executor.dispatch(pipeline(3)).key("order-7").await.unwrap();
    assert_eq!(again, first);
    let worker = TestWorker::start(&executor).await;
    assert_eq!(
        executor.wait_for::<u64, String>(first, None).await.unwrap(),
        Ok(6)
    );
    let after = executor.dispatch(pipeline(3)).key("order-7").await.unwrap();
    assert_eq!(after, first);
    worker.stop().await;
    assert_eq!(
        executor.list_executions(10, 0, None).await.unwrap().len(),
        1
    );

    // Another call under the same key is refused, naming both.
    let err = executor
        .dispatch(pipeline(4))
        .key("order-7")
        .await
        .unwrap_err();
    assert!(
        matches!(err, stent::Error::DispatchConflict { id, .. } if id == first),
        "{err}"
    );
    assert!(err.to_string().contains("other arguments"), "{err}");
    let err = executor
        .dispatch(double(3))
        .execution_id(first)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("workflows::double"), "{err}");
    assert_eq!(
        executor.list_executions(10, 0, None).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn unregistered_functions_are_named_with_the_registered_ones() {
    let mut registry = stent::FunctionRegistry::new();
    registry.register(double);
    let executor = Stent::builder(MemoryBackend::new())
        .function_registry(registry)
        .build();
    let err = executor.dispatch(pipeline(1)).await.unwrap_err();
    match err {
        stent::Error::UnregisteredFunction {
            function_name,
            registered,
        } => {
            assert!(function_name.ends_with("::pipeline"), "{function_name}");
            assert_eq!(registered.len(), 1);
            assert!(registered[0].ends_with("::double"));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn durable_functions_run_their_body_outside_an_execution() {
    assert_eq!(pipeline(3).await, Ok(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_steps_read_a_linear_number_of_events() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(pipeline(1000)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, Ok(999 * 1000));
    worker.stop().await;
    // A full replay on every step would read ~n²/2 = 500,000 events (the
    // journal holds 2n+2). Sticky execution reads each at most a few times.
    let read = backend.events_read();
    let commits = backend.commits.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("journal events read for 1,000 steps: {read}; commits: {commits}");
    // Each step's child turn rides with its parent's next turn: one commit per step.
    assert!(commits <= 1000 + 5, "{commits} commits for 1,000 steps");
    assert!(
        read <= 3 * 2002,
        "read {read} journal events for 1,000 steps"
    );
}

#[stent::durable]
async fn slow_io(ms: u64) -> Result<u64, String> {
    // Real (non-durable) async work inside a step, like an HTTP call.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[stent::durable]
async fn calls_slow_steps() -> Result<u64, String> {
    let a = slow_io(30).await?;
    let b = slow_io(20).await?;
    Ok(a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_awaiting_real_io_stay_resident_until_done() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let root = executor.dispatch(calls_slow_steps()).await.unwrap();
    let leaf = executor.dispatch(slow_io(40)).await.unwrap();
    let t = Some(Duration::from_secs(10));
    assert_eq!(
        executor.wait_for::<u64, String>(root, t).await.unwrap(),
        Ok(50)
    );
    assert_eq!(
        executor.wait_for::<u64, String>(leaf, t).await.unwrap(),
        Ok(40)
    );
    worker.stop().await;
}

static SLOW_STEP_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[stent::durable]
async fn outlives_its_lease(x: u64) -> Result<u64, String> {
    SLOW_STEP_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(x + 1)
}

#[stent::durable]
async fn fenced_flow(x: u64) -> Result<u64, String> {
    outlives_its_lease(x).await
}

/// Starts a worker with a 100 ms lease renewed every 30 ms, polling every
/// 10–20 ms.
async fn fenced_worker(executor: &Stent, name: &'static str) -> TestWorker {
    TestWorker::start_with(executor, move |w| {
        w.worker_id(name)
            .lease_duration(Duration::from_millis(100))
            .heartbeat_interval(Duration::from_millis(30))
            .poll_min_interval(Duration::from_millis(10))
            .poll_max_interval(Duration::from_millis(20))
    })
    .await
}

/// Checks the step of `id` completed once in the root journal.
async fn completed_once(executor: &Stent, id: stent::ExecutionId) {
    let rows = executor
        .backend()
        .read_journal(id.root_invocation(), stent_journal::Seq(0))
        .await
        .unwrap();
    let completed = rows.iter().filter(|r| r.kind == "call_completed").count();
    assert_eq!(
        completed,
        1,
        "{:?}",
        rows.iter().map(|r| &r.kind).collect::<Vec<_>>()
    );
}

/// Failure mode 3: worker "cut" loses the store mid-step (its renewals and
/// claims fail, as in a network partition), so its leases run out; worker
/// "healthy" takes the execution over and runs the step again. When "cut"
/// finishes its run, the fence refuses its commit: the step's result is
/// recorded once. Here "cut" claims the execution from the store.
#[tokio::test(start_paused = true)]
async fn a_worker_whose_lease_expired_mid_step_cannot_record_its_result() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let id = executor.dispatch(fenced_flow(41)).await.unwrap();
    let cut = fenced_worker(&executor, "cut").await;
    while SLOW_STEP_RUNS.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backend.partition("cut");
    let healthy = fenced_worker(&executor, "healthy").await;
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out, Ok(42));
    assert_eq!(SLOW_STEP_RUNS.load(std::sync::atomic::Ordering::SeqCst), 2);
    completed_once(&executor, id).await;
    cut.stop().await;
    healthy.stop().await;
}

static SLOW_STEP_RUNS_LOCAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[stent::durable]
async fn outlives_its_lease_when_dispatched_locally(x: u64) -> Result<u64, String> {
    SLOW_STEP_RUNS_LOCAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(x + 1)
}

#[stent::durable]
async fn fenced_local_flow(x: u64) -> Result<u64, String> {
    outlives_its_lease_when_dispatched_locally(x).await
}

/// The same, but "cut" is ready before the dispatch, so it takes the
/// execution at dispatch time (leased at creation) and starts the child in
/// memory; "healthy", in the same process, takes both over.
#[tokio::test(start_paused = true)]
async fn a_lease_expiring_mid_step_after_a_local_dispatch_is_taken_over_once() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let cut = fenced_worker(&executor, "cut").await;
    let id = executor.dispatch(fenced_local_flow(41)).await.unwrap();
    while SLOW_STEP_RUNS_LOCAL.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backend.partition("cut");
    let healthy = fenced_worker(&executor, "healthy").await;
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out, Ok(42));
    assert_eq!(
        SLOW_STEP_RUNS_LOCAL.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    completed_once(&executor, id).await;
    cut.stop().await;
    healthy.stop().await;
}

#[tokio::test]
async fn a_heartbeat_no_shorter_than_the_lease_is_refused() {
    let executor = Stent::new(MemoryBackend::new());
    let err = executor
        .worker()
        .lease_duration(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .serve()
        .await
        .unwrap_err();
    assert!(matches!(err, stent::Error::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("heartbeat_interval"), "{err}");
}

static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[stent::durable]
async fn released_by_the_test(x: u64) -> Result<u64, String> {
    STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
    RELEASE.notified().await;
    Ok(x * 10)
}

#[stent::durable]
async fn waits_for_the_test(x: u64) -> Result<u64, String> {
    released_by_the_test(x).await
}

/// A `wait_for` caller in the process whose worker runs the execution gets
/// the result from that worker: while the execution's root is resident
/// here, it does not read the execution before it waits, and reads it only
/// once its poll interval (100 ms) has passed, as any waiter does, since
/// what it waits for may end elsewhere (a takeover, a cancel from another
/// process).
#[tokio::test(start_paused = true)]
async fn a_waiter_in_the_finishing_process_does_not_read_the_result_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(waits_for_the_test(4)).await.unwrap();
    while !STARTED.load(SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reads = backend.execution_reads.clone();
    let before = reads.load(SeqCst);
    let waiter = {
        let executor = executor.clone();
        tokio::spawn(async move { executor.wait_for::<u64, String>(id, None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reads.load(SeqCst), before, "no read before the first poll");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reads.load(SeqCst), before + 1, "one read after 100 ms");
    RELEASE.notify_one();
    assert_eq!(waiter.await.unwrap().unwrap(), Ok(40));
    assert_eq!(
        reads.load(SeqCst),
        before + 1,
        "the result is not read back"
    );
    // A later caller reads it as before.
    assert_eq!(
        executor.wait_for::<u64, String>(id, None).await.unwrap(),
        Ok(40)
    );
    assert_eq!(reads.load(SeqCst), before + 2);
    worker.stop().await;
}
