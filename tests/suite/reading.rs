//! The read side: result_of, list_executions, queue_depth, delays.

use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{DurationSpec, Error, ExecutionStatus, Stent};
use stent_tests::TestWorker;

#[stent::durable]
async fn echo(x: u32) -> Result<u32, String> {
    Ok(x)
}

#[tokio::test]
async fn result_of_tells_not_found_from_still_running() {
    let executor = Stent::new(MemoryBackend::new());
    let ghost = stent::ExecutionId::new_random();
    assert!(matches!(
        executor.result_of::<u32, String>(ghost).await,
        Err(Error::NotFound(x)) if x == ghost
    ));
    assert!(matches!(
        executor.state_of(ghost).await,
        Err(Error::NotFound(_))
    ));
    let id = executor.dispatch(echo(1)).await.unwrap();
    assert!(matches!(
        executor.result_of::<u32, String>(id).await,
        Err(Error::StillRunning {
            state: ExecutionStatus::Pending,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn wait_for_with_an_expiry_gives_an_expiry_error() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(echo(1)).await.unwrap();
    let err = executor
        .wait_for::<u32, String>(id, Some(Duration::from_secs(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expiry { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn list_executions_pages_and_filters_by_state() {
    let executor = Stent::new(MemoryBackend::new());
    let mut done = Vec::new();
    let worker = TestWorker::start(&executor).await;
    for i in 0..5 {
        let id = executor.dispatch(echo(i)).await.unwrap();
        executor
            .wait_for::<u32, String>(id, None)
            .await
            .unwrap()
            .unwrap();
        done.push(id);
    }
    worker.stop().await;
    let pending = executor.dispatch(echo(99)).await.unwrap();

    let all = executor.list_executions(10, 0, None).await.unwrap();
    assert_eq!(all.len(), 6);
    let page = executor.list_executions(2, 1, None).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, all[1].id);
    let completed = executor
        .list_executions(10, 0, Some(ExecutionStatus::Completed))
        .await
        .unwrap();
    assert_eq!(completed.len(), 5);
    assert!(completed.iter().all(|e| done.contains(&e.id)));
    let waiting = executor
        .list_executions(10, 0, Some(ExecutionStatus::Pending))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id, pending);
    assert_eq!(executor.queue_depth(None).await.unwrap(), 1);
    assert_eq!(executor.queue_depth(Some("default")).await.unwrap(), 1);
    assert_eq!(executor.queue_depth(Some("other")).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn delays_accept_strings_durations_timedeltas_and_specs() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let start = tokio::time::Instant::now();
    let a = executor.dispatch(echo(1)).delay("90s").await.unwrap();
    let b = executor
        .dispatch(echo(2))
        .delay(Duration::from_secs(60))
        .await
        .unwrap();
    let c = executor
        .dispatch(echo(3))
        .delay(chrono::TimeDelta::minutes(2))
        .await
        .unwrap();
    let d = executor
        .dispatch(echo(4))
        .delay(DurationSpec {
            minutes: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    for (id, at_least) in [(b, 60), (a, 90), (c, 120), (d, 180)] {
        executor
            .wait_for::<u32, String>(id, None)
            .await
            .unwrap()
            .unwrap();
        let state = executor.state_of(id).await.unwrap();
        let waited = state.started_at.unwrap() - state.created_at;
        assert!(
            waited.num_seconds() >= at_least,
            "{id}: started after {waited}"
        );
    }
    assert!(start.elapsed() >= Duration::from_secs(180));
    worker.stop().await;
}

#[stent::durable]
async fn takes_blob(data: Vec<u32>) -> Result<usize, String> {
    Ok(data.len())
}

#[tokio::test]
async fn oversized_or_too_deep_input_is_refused_at_dispatch_and_signal() {
    let limits = stent::journal::PayloadLimits::new(1024, 4);
    let executor = Stent::builder(MemoryBackend::new())
        .payload_limits(limits)
        .build();
    let err = executor
        .dispatch(takes_blob(vec![7; 10_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Codec(stent::journal::CodecError::TooLarge { .. })
        ),
        "{err}"
    );
    let id = executor.dispatch(takes_blob(vec![1, 2, 3])).await.unwrap();
    let deep = vec![vec![vec![vec![vec![1u8]]]]];
    let err = executor.send_signal(id, "x", &deep).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Codec(stent::journal::CodecError::TooDeep { .. })
        ),
        "{err}"
    );
    assert_eq!(
        executor.list_executions(10, 0, None).await.unwrap().len(),
        1,
        "nothing stored"
    );
}

#[stent::durable]
async fn makes_blob(len: usize) -> Result<Vec<u8>, String> {
    Ok(vec![7; len])
}

#[stent::durable]
async fn calls_makes_blob(len: usize) -> Result<usize, String> {
    match makes_blob(len).await {
        Ok(blob) => Ok(blob.len()),
        Err(e) => Err(format!("step failed: {e}")),
    }
}

#[stent::durable]
async fn writes_blob(len: usize) -> Result<String, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    match ctx.state("blob").set(&vec![7u8; len]) {
        Ok(()) => Ok("stored".into()),
        Err(e) => Ok(format!("refused: {e}")),
    }
}

/// A result, an error or a context write too large to be read back is
/// never stored: a result over the limit fails its call, naming the limit
/// (its caller stops with that reason), a context write is refused to the
/// code;
/// the other executions and every listing stay readable.
#[tokio::test(start_paused = true)]
async fn values_over_the_limit_are_refused_when_written() {
    let limits = stent::journal::PayloadLimits::new(1024, 16);
    let executor = Stent::builder(MemoryBackend::new())
        .payload_limits(limits)
        .build();
    let worker = TestWorker::start(&executor).await;
    let small = executor.dispatch(makes_blob(10)).await.unwrap();
    let root = executor.dispatch(makes_blob(4000)).await.unwrap();
    let nested = executor.dispatch(calls_makes_blob(4000)).await.unwrap();
    let write = executor.dispatch(writes_blob(4000)).await.unwrap();

    assert_eq!(
        executor
            .wait_for::<Vec<u8>, String>(small, None)
            .await
            .unwrap(),
        Ok(vec![7; 10])
    );
    let err = executor
        .wait_for::<Vec<u8>, String>(root, None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "result of {}::makes_blob cannot be stored",
            module_path!()
        ))
            && message.contains("exceeds the limit of 1024 bytes"),
        "{message}"
    );
    // A call that could not produce a storable result is not a typed error
    // of the callee: the caller stops with the reason.
    let err = executor
        .wait_for::<usize, String>(nested, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "call to {m}::makes_blob failed: aborted: the result of {m}::makes_blob cannot be stored",
            m = module_path!()
        )),
        "{err}"
    );
    let out = executor
        .wait_for::<String, String>(write, None)
        .await
        .unwrap();
    assert!(
        out.as_ref()
            .is_ok_and(|m| m.starts_with("refused:") && m.contains("1024")),
        "{out:?}"
    );
    worker.stop().await;
    // Everything stored reads back.
    assert_eq!(
        executor.list_executions(10, 0, None).await.unwrap().len(),
        4
    );
    for id in [small, root, nested, write] {
        executor.state_of(id).await.unwrap();
    }
}

/// With the default limits, a 17 MiB result fails its execution with a
/// reason instead of being stored where no reader could decode it.
#[tokio::test(start_paused = true)]
async fn a_17_mib_result_fails_its_execution_and_listings_still_read() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let big = executor.dispatch(makes_blob(17 << 20)).await.unwrap();
    let err = executor
        .wait_for::<Vec<u8>, String>(big, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be stored"), "{err}");
    worker.stop().await;
    let listed = executor.list_executions(10, 0, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    executor.state_of(big).await.unwrap();
}

/// One execution whose stored terminal event does not decode and one whose
/// journal holds an undecodable context write: listings show every
/// execution and mark those two as corrupt, naming what does not read;
/// `state_of` answers for them too.
#[tokio::test]
async fn a_corrupt_execution_is_marked_and_the_others_listed() {
    use stent_journal::store::{
        ClaimRequest, ExecutionOutcome, NewEvent, TaskDisposition, TaskStore, TurnCommit,
    };
    use stent_journal::{EventKind, Seq, Timestamp, WorkerId};

    let backend = MemoryBackend::new();
    let executor = Stent::new(backend.clone());
    let ok = executor.dispatch(makes_blob(1)).await.unwrap();
    let bad_end = executor.dispatch(makes_blob(2)).await.unwrap();
    let bad_row = executor.dispatch(makes_blob(3)).await.unwrap();
    let now = Timestamp(i64::MAX / 4);
    let claimed = backend
        .claim(ClaimRequest {
            worker: WorkerId::new("w"),
            now,
            lease_until: Timestamp(now.0 + 60_000),
            limit: 10,
            queues: None,
            tags: None,
            functions: vec![concat!(module_path!(), "::makes_blob").into()],
            concurrency_limits: Vec::new(),
            code_version: None,
            also_runs: Vec::new(),
        })
        .await
        .unwrap();
    let epoch = |id: stent::ExecutionId| {
        claimed
            .iter()
            .find(|c| c.execution == id)
            .expect("claimed")
            .epoch
    };
    let turn = |id: stent::ExecutionId, disposition| {
        TurnCommit::bare(id.root_invocation(), epoch(id), now, disposition)
    };
    let garbage = vec![0xff, 0x00, 0x13];
    let end = turn(
        bad_end,
        TaskDisposition::Finish {
            deliver: None,
            execution: Some(ExecutionOutcome {
                status: ExecutionStatus::Completed,
                terminal_event: garbage.clone(),
            }),
        },
    );
    let mut row = turn(
        bad_row,
        TaskDisposition::Hold {
            lease_until: Timestamp(now.0 + 60_000),
        },
    );
    row.events = vec![NewEvent {
        seq: Seq(1),
        kind: EventKind::ContextWrite,
        call_key: None,
        bytes: garbage,
    }];
    backend.commit(vec![end, row]).await.unwrap();

    let listed = executor.list_executions(10, 0, None).await.unwrap();
    assert_eq!(listed.len(), 3, "every execution is listed");
    for e in &listed {
        match e.id {
            id if id == ok => assert_eq!(e.corrupt, None),
            id if id == bad_end => {
                let why = e.corrupt.as_deref().unwrap_or_default();
                assert!(why.contains("terminal event cannot be read"), "{why}");
                assert_eq!(e.state, ExecutionStatus::Completed);
            }
            id => {
                assert_eq!(id, bad_row);
                let why = e.corrupt.as_deref().unwrap_or_default();
                assert!(
                    why.contains("journal cannot be read") && why.contains("seq 1"),
                    "{why}"
                );
            }
        }
    }
    let state = executor.state_of(bad_row).await.unwrap();
    assert!(state.corrupt.is_some());
}
