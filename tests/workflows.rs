//! Workflows end to end on the memory backend: nested calls, typed errors,
//! durable sleeps, signals, linear cost.

use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{ExecutionStatus, Stent};
use stent_tests::CountingBackend;

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
    let a: String = Stent::wait_for_signal("vote").await.map_err(|e| e.to_string())?;
    let b: String = Stent::wait_for_signal("vote").await.map_err(|e| e.to_string())?;
    Ok(vec![a, b])
}

async fn start(executor: &Stent) -> (stent::WorkerLifecycle, tokio::task::JoinHandle<stent::Result<()>>) {
    let lifecycle = executor.create_worker_lifecycle(Some("test"));
    let handle = tokio::spawn(executor.worker().lifecycle(lifecycle.clone()).serve());
    lifecycle.wait_until_ready().await;
    (lifecycle, handle)
}

async fn stop(lifecycle: stent::WorkerLifecycle, handle: tokio::task::JoinHandle<stent::Result<()>>) {
    lifecycle.request_drain();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_return_the_right_result() {
    let executor = Stent::new(MemoryBackend::new());
    let (lc, h) = start(&executor).await;
    let id = executor.dispatch(pipeline(10)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok(90));
    assert_eq!(executor.state_of(id).await.unwrap().state, ExecutionStatus::Completed);
    stop(lc, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_and_typed_errors() {
    let executor = Stent::new(MemoryBackend::new());
    let (lc, h) = start(&executor).await;
    let a = executor.dispatch(nested(4)).await.unwrap();
    let b = executor.dispatch(catches(3)).await.unwrap();
    let c = executor.dispatch(refuse(5)).await.unwrap();
    let t = Some(Duration::from_secs(10));
    assert_eq!(executor.wait_for::<u64, String>(a, t).await.unwrap(), Ok(24));
    assert_eq!(
        executor.wait_for::<String, String>(b, t).await.unwrap(),
        Ok("caught: refused 3".to_string())
    );
    assert_eq!(
        executor.wait_for::<u64, String>(c, t).await.unwrap(),
        Err("refused 5".to_string())
    );
    assert_eq!(executor.state_of(c).await.unwrap().state, ExecutionStatus::Failed);
    stop(lc, h).await;
}

#[tokio::test(start_paused = true)]
async fn a_durable_sleep_parks_and_resumes_in_virtual_time() {
    let executor = Stent::new(MemoryBackend::new());
    let (lc, h) = start(&executor).await;
    let id = executor.dispatch(sleeper()).await.unwrap();
    let out = executor.wait_for::<String, String>(id, None).await.unwrap();
    assert_eq!(out, Ok("woke".to_string()));
    stop(lc, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_runs_children_in_parallel_and_keeps_order() {
    let executor = Stent::new(MemoryBackend::new());
    let (lc, h) = start(&executor).await;
    let id = executor.dispatch(fan_out(50)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok((0..50).map(|x| x * 2).sum()));
    stop(lc, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_and_after_the_wait_arrive_once_in_order() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(approval()).await.unwrap();
    // Sent before any worker runs: kept.
    executor.send_signal(id, "vote", &"first").await.unwrap();
    let (lc, h) = start(&executor).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    executor.send_signal(id, "vote", &"second").await.unwrap();
    executor.send_signal(id, "vote", &"third").await.unwrap();
    let out = executor
        .wait_for::<Vec<String>, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok(vec!["first".to_string(), "second".to_string()]));
    stop(lc, h).await;
}

#[tokio::test]
async fn signal_to_an_unknown_execution_is_not_found() {
    let executor = Stent::new(MemoryBackend::new());
    let ghost = stent::ExecutionId::new_random();
    let err = executor.send_signal(ghost, "x", &1).await.unwrap_err();
    assert!(matches!(err, stent::Error::NotFound(id) if id == ghost), "{err}");
}

#[tokio::test]
async fn dispatch_rejects_conflicting_and_malformed_options() {
    let executor = Stent::new(MemoryBackend::new());
    let err = executor.dispatch(double(1)).expiry("1h").max_duration("2h").await.unwrap_err();
    assert!(matches!(err, stent::Error::InvalidConfig(_)), "{err}");
    let err = executor.dispatch(double(1)).delay("1h 30m").await.unwrap_err();
    assert!(matches!(err, stent::Error::InvalidDuration(_)), "{err}");
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
        stent::Error::UnregisteredFunction { function_name, registered } => {
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
    let (lc, h) = start(&executor).await;
    let id = executor.dispatch(pipeline(1000)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, Ok(999 * 1000));
    stop(lc, h).await;
    // A full replay on every step would read ~n²/2 = 500,000 events (the
    // journal holds 2n+2). Sticky execution reads each at most a few times.
    let read = backend.events_read();
    eprintln!("journal events read for 1,000 steps: {read}");
    assert!(read <= 3 * 2002, "read {read} journal events for 1,000 steps");
}
