//! Signals: delivered exactly once whenever they are sent relative to the
//! wait, in order, and waits can time out.

use std::time::Duration;

use stent::Stent;
use stent::backends::MemoryBackend;
use stent_tests::TestWorker;

#[stent::durable]
async fn step(x: u32) -> Result<u32, String> {
    Ok(x)
}

#[stent::durable]
async fn waits_once(k: u32) -> Result<(u32, u32), String> {
    // A step first, so the wait is created at a varying moment.
    let k = step(k).await?;
    let got: u32 = Stent::wait_for_signal("value")
        .await
        .map_err(|e| e.to_string())?;
    Ok((k, got))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_at_any_moment_is_delivered_exactly_once() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let mut ids = Vec::new();
    for k in 0..30u32 {
        let id = executor.dispatch(waits_once(k)).await.unwrap();
        // Before the wait exists, while it is being created, after it waits.
        let executor = executor.clone();
        let offset = Duration::from_micros(u64::from(k) * 150);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            executor.send_signal(id, "value", &(k * 10)).await.unwrap();
        });
        ids.push((k, id));
    }
    for (k, id) in ids {
        let out = executor
            .wait_for::<(u32, u32), String>(id, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(out, Ok((k, k * 10)));
    }
    worker.stop().await;
}

#[stent::durable]
async fn timed_wait() -> Result<(Option<String>, String), String> {
    let first: Option<String> = Stent::wait_for_signal_timeout("answer", "10s")
        .await
        .map_err(|e| e.to_string())?;
    // A signal that arrived after the timeout is kept for this wait.
    let second: String = Stent::wait_for_signal("answer")
        .await
        .map_err(|e| e.to_string())?;
    Ok((first, second))
}

#[stent::durable]
async fn prompt_answer() -> Result<Option<String>, String> {
    Stent::wait_for_signal_timeout("answer", "1h")
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_wait_with_a_timeout_returns_none_and_keeps_late_signals() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(timed_wait()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    executor.send_signal(id, "answer", &"late").await.unwrap();
    let out = executor
        .wait_for::<(Option<String>, String), String>(id, None)
        .await
        .unwrap();
    assert_eq!(out, Ok((None, "late".to_string())));

    let id = executor.dispatch(prompt_answer()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    executor.send_signal(id, "answer", &"yes").await.unwrap();
    let started = tokio::time::Instant::now();
    let out = executor
        .wait_for::<Option<String>, String>(id, None)
        .await
        .unwrap();
    assert_eq!(out, Ok(Some("yes".to_string())));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "did not wait for the hour"
    );
    worker.stop().await;
}

#[stent::durable]
async fn two_votes() -> Result<Vec<String>, String> {
    let a: String = Stent::wait_for_signal("vote")
        .await
        .map_err(|e| e.to_string())?;
    let b: String = Stent::wait_for_signal("vote")
        .await
        .map_err(|e| e.to_string())?;
    Ok(vec![a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_both_waits_are_delivered_in_order() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(two_votes()).await.unwrap();
    executor.send_signal(id, "vote", &"first").await.unwrap();
    executor.send_signal(id, "vote", &"second").await.unwrap();
    let worker = TestWorker::start(&executor).await;
    let out = executor
        .wait_for::<Vec<String>, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok(vec!["first".to_string(), "second".to_string()]));
    worker.stop().await;
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Shipment {
    carrier: String,
    tracking: u64,
}

#[stent::durable]
async fn awaits_shipment(order: u64) -> Result<String, String> {
    let s: Shipment = Stent::wait_for_signal("shipped")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "order {order} shipped by {} as {}",
        s.carrier, s.tracking
    ))
}

/// An operator's typo — a signal whose payload is not what the workflow
/// waits for — does not destroy the execution: the signal is set aside
/// (never journaled), the execution is paused with a report naming the
/// signal and the type, and once a good signal is sent and the execution
/// resumed it completes.
#[tokio::test(start_paused = true)]
async fn a_signal_that_does_not_decode_pauses_the_execution_until_a_good_one_comes() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(awaits_shipment(7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    executor.send_signal(id, "shipped", &"FedEx").await.unwrap();
    let paused = loop {
        let state = executor.state_of(id).await.unwrap();
        if state.state == stent::ExecutionStatus::Paused {
            break state;
        }
        assert_ne!(state.state, stent::ExecutionStatus::Failed, "{state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let signal = paused
        .pause
        .as_ref()
        .and_then(|p| p.signal.clone())
        .expect("a structured report names the signal");
    assert_eq!(signal.name, "shipped");
    assert_eq!(signal.invocation, id.root_invocation());
    assert!(signal.expected_type.ends_with("Shipment"), "{signal:?}");
    assert!(!signal.why.is_empty());
    let report = paused.pause_report.unwrap_or_default();
    assert!(
        report.contains("signal \"shipped\"")
            && report.contains("Shipment")
            && report.contains("set aside"),
        "{report}"
    );
    // The bad signal is gone; nothing of it is in the journal.
    let journal = executor
        .backend()
        .read_journal(id.root_invocation(), stent_journal::Seq(0))
        .await
        .unwrap();
    assert!(
        journal.iter().all(|r| r.kind != "signal_received"),
        "{journal:?}"
    );

    executor
        .send_signal(
            id,
            "shipped",
            &Shipment {
                carrier: "FedEx".into(),
                tracking: 42,
            },
        )
        .await
        .expect("a paused execution takes signals");
    executor.resume(id).await.unwrap();
    let out = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, Ok("order 7 shipped by FedEx as 42".to_string()));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_key_out_of_range_is_an_invalid_argument_and_nothing_is_sent() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(waits_once(7)).await.unwrap();
    for key in [String::new(), "k".repeat(513)] {
        let err = executor
            .send_signal_with_key(id, "value", &1u32, &key)
            .await
            .unwrap_err();
        assert!(matches!(err, stent::Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("signal key"), "{err}");
    }
    // Neither refused send was stored: the wait takes the next one.
    executor
        .send_signal_with_key(id, "value", &2u32, &"k".repeat(512))
        .await
        .unwrap();
    let worker = TestWorker::start(&executor).await;
    let out = executor
        .wait_for::<(u32, u32), String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out, Ok((7, 2)));
    worker.stop().await;
}
