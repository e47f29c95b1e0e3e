//! Code that no longer matches its journal pauses the execution with a
//! report naming the seq, the recorded event and what the code asked —
//! instead of retrying forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::debugger::DivergenceKind;
use stent::journal::Seq;
use stent::{Error, ExecutionStatus, Stent};

/// Stands for "the code was changed and redeployed".
static NEW_CODE: AtomicBool = AtomicBool::new(false);

#[stent::durable]
async fn send_email(to: String) -> Result<(), String> {
    let _ = to;
    Ok(())
}

#[stent::durable]
async fn send_sms(to: String) -> Result<(), String> {
    let _ = to;
    Ok(())
}

#[stent::durable]
async fn notify_then_wait(user: String) -> Result<String, String> {
    if NEW_CODE.load(Ordering::SeqCst) {
        send_sms(user.clone()).await?;
    } else {
        send_email(user.clone()).await?;
    }
    let answer: String = Stent::wait_for_signal("answer")
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// Dispatches `call` and runs a worker until the execution waits for a
/// signal, then stops the worker (the old code's deployment ends).
async fn run_until_waiting<D: stent::DurableFn>(
    executor: &Stent,
    call: stent::Call<D>,
) -> stent::ExecutionId {
    let lc = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(executor.worker().lifecycle(lc.clone()).serve());
    let id = executor.dispatch(call).await.unwrap();
    loop {
        let rows = executor
            .backend()
            .read_journal(id.root_invocation(), Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == "signal_awaited") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lc.request_drain();
    worker.await.unwrap().unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_workflow_is_paused_with_a_report() {
    let executor = Stent::new(MemoryBackend::new());
    // The old code journals its email and waits for the signal.
    let id = run_until_waiting(&executor, notify_then_wait("ada".into())).await;

    // Redeploy with the changed code; a fresh worker replays the journal.
    NEW_CODE.store(true, Ordering::SeqCst);
    executor.send_signal(id, "answer", &"yes").await.unwrap();
    let lc = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(executor.worker().lifecycle(lc.clone()).serve());
    let err = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap_err();
    let Error::NonDeterminism { report, .. } = err else {
        panic!("expected a non-determinism report, got {err}");
    };
    assert!(report.contains("seq 1"), "{report}");
    assert!(report.contains("send_email"), "{report}");
    assert!(report.contains("send_sms"), "{report}");
    assert!(report.contains(&id.to_string()), "{report}");
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.state, ExecutionStatus::Paused);
    assert_eq!(state.pause_report.as_deref(), Some(report.as_str()));
    // The same report, structured: where, what, and field by field.
    let d = state
        .pause
        .and_then(|p| p.divergence)
        .expect("a structured divergence");
    assert_eq!(d.seq, Seq(1));
    assert_eq!(d.kind, DivergenceKind::Mismatch);
    assert_eq!(d.invocation, id.root_invocation());
    assert!(d.recorded.unwrap().contains("send_email"));
    assert!(d.asked.unwrap().contains("send_sms"));
    assert_eq!(d.diffs[0].path, "function");
    assert!(report.contains("\n    function: "), "{report}");
    // Paused means stopped: nothing retries it in a loop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(executor.queue_depth(None).await.unwrap(), 0);
    lc.request_drain();
    worker.await.unwrap().unwrap();
}

static SWAPPED: AtomicBool = AtomicBool::new(false);

#[stent::durable]
async fn reserve_stock(order: u32) -> Result<u32, String> {
    Ok(order)
}

#[stent::durable]
async fn charge_card(order: u32) -> Result<u32, String> {
    Ok(order)
}

#[stent::durable]
async fn reserve_then_charge(order: u32) -> Result<String, String> {
    if SWAPPED.load(Ordering::SeqCst) {
        charge_card(order).await?;
        reserve_stock(order).await?;
    } else {
        reserve_stock(order).await?;
        charge_card(order).await?;
    }
    let answer: String = Stent::wait_for_signal("answer")
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// Two calls swapped by a code change are reported as a reorder, naming
/// where the journal holds the call the code now makes first — not as a
/// field diff between two unrelated calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_calls_are_reported_as_reordered() {
    let executor = Stent::new(MemoryBackend::new());
    let id = run_until_waiting(&executor, reserve_then_charge(9)).await;

    SWAPPED.store(true, Ordering::SeqCst);
    executor.send_signal(id, "answer", &"yes").await.unwrap();
    let lc = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(executor.worker().lifecycle(lc.clone()).serve());
    let err = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NonDeterminism { .. }), "{err}");
    let state = executor.state_of(id).await.unwrap();
    let report = state.pause.expect("a pause report");
    let d = report.divergence.clone().expect("a divergence");
    assert_eq!(d.kind, DivergenceKind::Reordered);
    assert_eq!(d.seq, Seq(1));
    // seq 1 reserve, 2 its result, 3 charge: the code asked for charge first.
    assert_eq!(d.recorded_at, Some(Seq(3)));
    assert!(d.diffs.is_empty(), "{:?}", d.diffs);
    assert!(report.text.contains("calls reordered"), "{}", report.text);
    assert!(
        report
            .summary()
            .starts_with("paused: calls reordered at seq 1")
    );
    lc.request_drain();
    worker.await.unwrap().unwrap();
}
