//! Execution context (counters, custom state), deterministic reads
//! (`Stent::now/uuid/random`) and the derived fields of `state_of`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::backends::MemoryBackend;
use stent::{ContextDefaults, ExecutionStatus, ProgressState, Stent};
use stent_tests::TestWorker;

const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

fn s(e: stent::Error) -> String {
    e.to_string()
}

/// Polls `state_of` until `check` holds (or panics after 20 s).
async fn until(
    executor: &Stent,
    id: stent::ExecutionId,
    what: &str,
    check: impl Fn(&stent::ExecutionState) -> bool,
) -> stent::ExecutionState {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = executor.state_of(id).await.unwrap();
        if check(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting for {what}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counts the `ContextWrite` / `SideEffect` rows of the root journal.
async fn root_kinds(executor: &Stent, id: stent::ExecutionId, kind: &str) -> usize {
    executor
        .backend()
        .read_journal(id.root_invocation(), stent::journal::Seq(0))
        .await
        .unwrap()
        .iter()
        .filter(|r| r.kind == kind)
        .count()
}

#[stent::durable]
async fn double(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[stent::durable]
async fn refuse(x: u64) -> Result<u64, String> {
    Err(format!("refused {x}"))
}

#[stent::durable]
async fn count_in_child(n: u64) -> Result<u64, String> {
    let ctx = Stent::context().map_err(s)?;
    ctx.counters("items").add(n as u32).map_err(s)?;
    ctx.state("last_child").set(&n).map_err(s)?;
    double(n).await
}

#[stent::durable]
async fn counts_and_states() -> Result<(), String> {
    let ctx = Stent::context().map_err(s)?;
    ctx.counters("items").add(1).map_err(s)?;
    ctx.counters("bytes").add(2.5).map_err(s)?;
    ctx.counters("bytes").add(-0.5).map_err(s)?;
    ctx.state("phase").set("loading").map_err(s)?;
    count_in_child(10).await?;
    ctx.state("phase").set("done").map_err(s)?;
    ctx.state("tags").set(&vec!["a", "b"]).map_err(s)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_state_are_visible_in_state_of() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(counts_and_states()).await.unwrap();
    let out = executor.wait_for::<(), String>(id, LIMIT).await.unwrap();
    assert_eq!(out, Ok(()));
    let state = executor.state_of(id).await.unwrap();
    // The child's writes count for the whole execution.
    assert_eq!(state.counters.get("items"), Some(&11.0));
    assert_eq!(state.counters.get("bytes"), Some(&2.0));
    assert_eq!(
        state.custom_state_as::<String>("phase").unwrap().as_deref(),
        Some("done")
    );
    assert_eq!(
        state.custom_state_as::<u64>("last_child").unwrap(),
        Some(10)
    );
    assert_eq!(
        state.custom_state_as::<Vec<String>>("tags").unwrap(),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(state.custom_state_as::<String>("never").unwrap(), None);
    // Calls made by nested invocations are listed too.
    assert_eq!(state.progress_str, "2/2 calls done");
    let root = id.root_invocation();
    let child = state
        .progress
        .iter()
        .find(|p| p.invocation == root)
        .unwrap();
    assert!(
        child
            .function
            .as_deref()
            .unwrap()
            .ends_with("::count_in_child")
    );
    let nested = state
        .progress
        .iter()
        .find(|p| p.invocation != root)
        .unwrap();
    assert_eq!(Some(nested.invocation), child.child);
    assert!(nested.function.as_deref().unwrap().ends_with("::double"));
    // list_executions carries the same derived fields.
    let listed = executor.list_executions(10, 0, None).await.unwrap();
    let mine = listed.iter().find(|e| e.id == id).unwrap();
    assert_eq!(mine.counters, state.counters);
    assert_eq!(mine.custom_state, state.custom_state);
    assert_eq!(mine.progress_str, state.progress_str);
    worker.stop().await;
}

static REPLAYED_BODY_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable]
async fn counts_across_a_replay() -> Result<u64, String> {
    REPLAYED_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    let ctx = Stent::context().map_err(s)?;
    ctx.counters("done").add(1).map_err(s)?;
    ctx.state("phase").set("waiting").map_err(s)?;
    let more: u64 = Stent::wait_for_signal("go").await.map_err(s)?;
    ctx.counters("done").add(more as u32).map_err(s)?;
    ctx.state("phase").set("finished").map_err(s)?;
    Ok(more)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_worker_restart_does_not_count_twice() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(counts_across_a_replay()).await.unwrap();
    let state = until(&executor, id, "the first write", |st| {
        st.custom_state.contains_key("phase")
    })
    .await;
    assert_eq!(state.counters.get("done"), Some(&1.0));
    // The worker goes away while the workflow waits for its signal; a
    // fresh one replays it from the journal.
    worker.stop().await;
    let worker = TestWorker::start(&executor).await;
    executor.send_signal(id, "go", &5u64).await.unwrap();
    let out = executor.wait_for::<u64, String>(id, LIMIT).await.unwrap();
    assert_eq!(out, Ok(5));
    assert!(REPLAYED_BODY_RUNS.load(Ordering::SeqCst) >= 2, "no replay");
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.counters.get("done"), Some(&6.0));
    assert_eq!(
        state.custom_state_as::<String>("phase").unwrap().as_deref(),
        Some("finished")
    );
    // Four writes, each journaled once.
    assert_eq!(root_kinds(&executor, id, "context_write").await, 4);
    worker.stop().await;
}

#[stent::durable]
async fn child_writes_first() -> Result<(), String> {
    let ctx = Stent::context().map_err(s)?;
    ctx.counters("seen").add(3).map_err(s)?;
    ctx.state("owner").set("child").map_err(s)?;
    Ok(())
}

#[stent::durable]
async fn uses_defaults() -> Result<(), String> {
    let ctx = Stent::context_with(
        ContextDefaults::new()
            .counter("progress", 10)
            .counter("untouched", 0.5)
            .state("phase", "start")
            .state("retries_left", &3u8),
    )
    .map_err(s)?;
    ctx.counters("progress").add(1).map_err(s)?;
    ctx.state("phase").set("running").map_err(s)?;
    // Defaults given again later are ignored: the values exist already.
    child_writes_first().await?;
    Stent::context_with(
        ContextDefaults::new()
            .counter("progress", 100)
            .counter("seen", 100)
            .state("phase", "again")
            .state("owner", "parent"),
    )
    .map_err(s)?;
    // Invalid defaults are refused before anything is journaled.
    let bad = Stent::context_with(ContextDefaults::new().counter("nan", f64::NAN));
    assert!(matches!(bad, Err(stent::Error::InvalidArgument(_))));
    let bad = ctx.counters("inf").add(f64::INFINITY);
    assert!(matches!(bad, Err(stent::Error::InvalidArgument(_))));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_initialise_only_what_is_not_there_yet() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(uses_defaults()).await.unwrap();
    let out = executor.wait_for::<(), String>(id, LIMIT).await.unwrap();
    assert_eq!(out, Ok(()));
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.counters.get("progress"), Some(&11.0));
    assert_eq!(state.counters.get("untouched"), Some(&0.5));
    assert_eq!(state.counters.get("seen"), Some(&3.0));
    assert!(!state.counters.contains_key("nan"));
    assert!(!state.counters.contains_key("inf"));
    assert_eq!(
        state.custom_state_as::<String>("phase").unwrap().as_deref(),
        Some("running")
    );
    assert_eq!(
        state.custom_state_as::<String>("owner").unwrap().as_deref(),
        Some("child")
    );
    assert_eq!(
        state.custom_state_as::<u8>("retries_left").unwrap(),
        Some(3)
    );
    worker.stop().await;
}

/// `Stent::now()` as milliseconds, `Stent::uuid()` as text, `Stent::random()`.
type Reads = (i64, String, f64);

static READ_BODY_RUNS: AtomicU32 = AtomicU32::new(0);

#[stent::durable]
async fn reads_then_waits() -> Result<Reads, String> {
    READ_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    let reads: Reads = (
        Stent::now().map_err(s)?.timestamp_millis(),
        Stent::uuid().map_err(s)?.to_string(),
        Stent::random().map_err(s)?,
    );
    // What the first run saw, for the test to compare with.
    Stent::context()
        .map_err(s)?
        .state("first_run")
        .set(&reads)
        .map_err(s)?;
    let () = Stent::wait_for_signal("go").await.map_err(s)?;
    Ok(reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_uuid_and_random_replay_the_recorded_values() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let before = executor.clock_now().millis();
    let id = executor.dispatch(reads_then_waits()).await.unwrap();
    let state = until(&executor, id, "the first run's reads", |st| {
        st.custom_state.contains_key("first_run")
    })
    .await;
    let first: Reads = state.custom_state_as("first_run").unwrap().unwrap();
    worker.stop().await;
    // Time passes before the replay.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let worker = TestWorker::start(&executor).await;
    executor.send_signal(id, "go", &()).await.unwrap();
    let replayed = executor
        .wait_for::<Reads, String>(id, LIMIT)
        .await
        .unwrap()
        .unwrap();
    assert!(READ_BODY_RUNS.load(Ordering::SeqCst) >= 2, "no replay");
    assert_eq!(replayed, first);
    let (now, uuid, random) = replayed;
    assert!(
        now >= before && now <= executor.clock_now().millis(),
        "{now}"
    );
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(&uuid[14..15], "4", "not a v4 uuid: {uuid}");
    assert!((0.0..1.0).contains(&random), "{random}");
    assert_eq!(root_kinds(&executor, id, "side_effect").await, 3);
    worker.stop().await;
}

#[stent::durable]
async fn spawned_task_has_no_context() -> Result<bool, String> {
    let handle = tokio::spawn(async {
        matches!(Stent::context(), Err(stent::Error::NoContext(_)))
            && matches!(Stent::now(), Err(stent::Error::NoContext(_)))
    });
    handle.await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_an_execution_everything_is_no_context() {
    let no_context = |r: Result<(), stent::Error>| match r {
        Err(e @ stent::Error::NoContext(_)) => {
            assert!(e.to_string().contains("durable"), "{e}");
        }
        other => panic!("expected NoContext, got {other:?}"),
    };
    no_context(Stent::context().map(drop));
    no_context(Stent::context_with(ContextDefaults::new().counter("x", 1)).map(drop));
    no_context(Stent::now().map(drop));
    no_context(Stent::uuid().map(drop));
    no_context(Stent::random().map(drop));
    // Inside a workflow, a `tokio::spawn`ed task is outside the execution.
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor
        .dispatch(spawned_task_has_no_context())
        .await
        .unwrap();
    let out = executor.wait_for::<bool, String>(id, LIMIT).await.unwrap();
    assert_eq!(out, Ok(true));
    worker.stop().await;
}

#[stent::durable]
async fn waits_in_child() -> Result<u64, String> {
    let v: u64 = Stent::wait_for_signal("child-go").await.map_err(s)?;
    Ok(v)
}

#[stent::durable]
async fn several_calls() -> Result<u64, String> {
    let mut acc = 0;
    for i in 1..=3 {
        acc += double(i).await?;
    }
    if let Ok(v) = refuse(7).await {
        acc += v;
    }
    acc += waits_in_child().await?;
    Ok(acc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lists_every_call_with_its_state_and_times() {
    let executor = Stent::new(MemoryBackend::new());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(several_calls()).await.unwrap();
    let state = until(&executor, id, "five calls", |st| st.progress.len() == 5).await;
    assert_eq!(state.progress_str, "4/5 calls done, 1 failed");
    let states: Vec<ProgressState> = state.progress.iter().map(|p| p.state).collect();
    assert_eq!(
        states,
        [
            ProgressState::Completed,
            ProgressState::Completed,
            ProgressState::Completed,
            ProgressState::Failed,
            ProgressState::Scheduled,
        ]
    );
    let names: Vec<&str> = state
        .progress
        .iter()
        .map(|p| p.function.as_deref().unwrap())
        .collect();
    assert!(names[0].ends_with("::double"), "{names:?}");
    assert!(names[3].ends_with("::refuse"), "{names:?}");
    assert!(names[4].ends_with("::waits_in_child"), "{names:?}");
    for p in &state.progress {
        assert_eq!(p.invocation, id.root_invocation());
        assert!(!p.cached);
        assert!(p.child.is_some());
        match p.completed_at {
            Some(done) => assert!(done >= p.started_at),
            None => assert_eq!(p.state, ProgressState::Scheduled),
        }
    }
    let seqs: Vec<u32> = state.progress.iter().map(|p| p.seq.0).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    executor.send_signal(id, "child-go", &100u64).await.unwrap();
    let out = executor.wait_for::<u64, String>(id, LIMIT).await.unwrap();
    assert_eq!(out, Ok(2 + 4 + 6 + 100));
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.state, ExecutionStatus::Completed);
    assert_eq!(state.progress_str, "5/5 calls done, 1 failed");
    assert_eq!(state.progress[4].state, ProgressState::Completed);
    assert_eq!(state.retries, 0);
    worker.stop().await;
}

#[tokio::test]
async fn an_execution_without_calls_reports_zero_of_zero() {
    let executor = Stent::new(MemoryBackend::new());
    let id = executor.dispatch(double(1)).await.unwrap();
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.progress_str, "0/0 calls done");
    assert!(state.progress.is_empty() && state.counters.is_empty());
}
