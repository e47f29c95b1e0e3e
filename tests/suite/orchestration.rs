//! `Stent::map`, `Stent::starmap`, `Stent::map_all`, `Stent::gather`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use stent::Stent;
use stent::backends::MemoryBackend;
use stent_tests::{CountingBackend, TestWorker};

#[stent::durable]
async fn double(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[stent::durable]
async fn add(a: u64, b: u64) -> Result<u64, String> {
    Ok(a + b)
}

#[stent::durable]
async fn odd_only(x: u64) -> Result<u64, String> {
    if x % 2 == 1 {
        Ok(x)
    } else {
        Err(format!("{x} is even"))
    }
}

#[stent::durable]
async fn mapper(n: u64) -> Result<Vec<u64>, String> {
    Stent::map(double, 0..n).await
}

#[stent::durable]
async fn starmapper() -> Result<Vec<u64>, String> {
    Stent::starmap(add, vec![(1, 2), (10, 20), (100, 200)]).await
}

#[stent::durable]
async fn mixed() -> Result<(Vec<Result<u64, String>>, Result<Vec<u64>, String>), String> {
    let every = Stent::map_all(odd_only, [1, 2, 3]).await;
    let first_error = Stent::map(odd_only, [1, 2, 3]).await;
    Ok((every, first_error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_schedules_the_whole_batch_in_one_commit_and_keeps_order() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let executor = Stent::new(backend.clone());
    let worker = TestWorker::start(&executor).await;
    let t = Some(Duration::from_secs(20));
    let id = executor.dispatch(mapper(200)).await.unwrap();
    let out = executor
        .wait_for::<Vec<u64>, String>(id, t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, (0..200).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(backend.max_spawns_per_commit.load(Ordering::SeqCst), 200);

    let id = executor.dispatch(starmapper()).await.unwrap();
    let out = executor.wait_for::<Vec<u64>, String>(id, t).await.unwrap();
    assert_eq!(out, Ok(vec![3, 30, 300]));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_all_returns_every_outcome_and_map_stops_at_the_first_error() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(mixed()).await.unwrap();
    type Out = (Vec<Result<u64, String>>, Result<Vec<u64>, String>);
    let (every, first_error) = executor
        .wait_for::<Out, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(every, vec![Ok(1), Err("2 is even".into()), Ok(3)]);
    assert_eq!(first_error, Err("2 is even".into()));
    worker.stop().await;
}
