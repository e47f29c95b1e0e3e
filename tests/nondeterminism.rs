//! Code that no longer matches its journal pauses the execution with a
//! report naming the seq, the recorded event and what the code asked —
//! instead of retrying forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_workflow_is_paused_with_a_report() {
    let executor = Stent::new(MemoryBackend::new());
    let lc = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(executor.worker().lifecycle(lc.clone()).serve());
    let id = executor
        .dispatch(notify_then_wait("ada".into()))
        .await
        .unwrap();
    // Wait until the old code has journaled its email and waits for the signal.
    loop {
        let rows = executor
            .backend()
            .read_journal(id.root_invocation(), stent_journal::Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == "signal_awaited") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lc.request_drain();
    worker.await.unwrap().unwrap();

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
    // Paused means stopped: nothing retries it in a loop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(executor.queue_depth(None).await.unwrap(), 0);
    lc.request_drain();
    worker.await.unwrap().unwrap();
}
