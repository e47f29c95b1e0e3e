//! Changing workflow code while executions are in flight: a patch keeps
//! executions recorded by the old code on the old branch while new ones
//! take the new branch; deprecating a patch too early pauses with a report
//! that names it; the deploy check finds exactly the executions a build
//! would pause; a new function version replays the calls recorded under
//! the old one. On SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use stent::backends::SqliteBackend;
use stent::debugger::{DeployCheck, DivergenceKind, DivergenceReason};
use stent::journal::Seq;
use stent::{Error, ExecutionId, ExecutionStatus, Stent};
use stent_tests::harness::TestWorker;

/// Which code each test has "deployed", by the tag its executions carry
/// (tests run side by side in one process).
static DEPLOYED: Mutex<BTreeMap<String, Code>> = Mutex::new(BTreeMap::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    /// Before the change: every order goes by road.
    Old,
    /// The change behind `Stent::patched("ship-by-air")`.
    Patched,
    /// The old branch removed: `Stent::deprecate_patch("ship-by-air")`.
    Deprecated,
    /// The patch call removed as well.
    Removed,
}

fn deploy(tag: &str, code: Code) {
    DEPLOYED.lock().unwrap().insert(tag.to_string(), code);
}

fn deployed(tag: &str) -> Code {
    DEPLOYED
        .lock()
        .unwrap()
        .get(tag)
        .copied()
        .unwrap_or(Code::Old)
}

#[stent::durable]
async fn by_road(order: u32) -> Result<String, String> {
    Ok(format!("road-{order}"))
}

#[stent::durable]
async fn by_air(order: u32) -> Result<String, String> {
    Ok(format!("air-{order}"))
}

#[stent::durable]
async fn deliver(tag: String, order: u32) -> Result<String, String> {
    let s = |e: Error| e.to_string();
    let carrier = match deployed(&tag) {
        Code::Old => by_road(order).await?,
        Code::Patched => {
            if Stent::patched("ship-by-air").map_err(s)? {
                by_air(order).await?
            } else {
                by_road(order).await?
            }
        }
        Code::Deprecated => {
            Stent::deprecate_patch("ship-by-air").map_err(s)?;
            by_air(order).await?
        }
        Code::Removed => by_air(order).await?,
    };
    let note: String = Stent::wait_for_signal("delivered").await.map_err(s)?;
    Ok(format!("{carrier} {note}"))
}

/// Waits until execution `id` waits for its signal.
async fn until_waiting(stent: &Stent, id: ExecutionId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = stent
            .backend()
            .read_journal(id.root_invocation(), Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == "signal_awaited") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never waited for its signal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts `n` executions of `deliver` on the code deployed now and waits
/// until each waits for its signal.
async fn start(stent: &Stent, tag: &str, orders: &[u32]) -> Vec<ExecutionId> {
    let worker = TestWorker::start(stent).await;
    let mut ids = Vec::new();
    for &order in orders {
        ids.push(stent.dispatch(deliver(tag.into(), order)).await.unwrap());
    }
    for &id in &ids {
        until_waiting(stent, id).await;
    }
    worker.stop().await;
    ids
}

async fn finish(stent: &Stent, id: ExecutionId) -> Result<String, Error> {
    stent.send_signal(id, "delivered", &"ok").await.unwrap();
    stent
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .map(|r| r.unwrap())
}

async fn has_marker(stent: &Stent, id: ExecutionId) -> bool {
    stent
        .backend()
        .read_journal(id.root_invocation(), Seq(0))
        .await
        .unwrap()
        .iter()
        .any(|r| r.kind == "patch_marker")
}

async fn ids_that_would_pause(stent: &Stent) -> Vec<ExecutionId> {
    let report = DeployCheck::new().run(stent).await.unwrap();
    report.would_pause.iter().map(|p| p.execution).collect()
}

fn sorted(mut ids: Vec<ExecutionId>) -> Vec<ExecutionId> {
    ids.sort();
    ids
}

/// The whole life of a patch, on one database.
async fn a_patch_from_start_to_removal(stent: Stent, tag: &str) {
    // v1 starts two executions: they ship by road and wait.
    deploy(tag, Code::Old);
    let old = start(&stent, tag, &[1, 2]).await;

    // Before shipping v2, the deploy check replays them on v2: safe.
    deploy(tag, Code::Patched);
    let report = DeployCheck::new().run(&stent).await.unwrap();
    assert!(report.is_safe(), "{report}");
    assert_eq!(report.checked, 2);

    // v2 ships with the patch; new executions take the new branch.
    let new = start(&stent, tag, &[3, 4]).await;
    for &id in &new {
        assert!(has_marker(&stent, id).await, "{id} recorded no marker");
    }
    for &id in &old {
        assert!(!has_marker(&stent, id).await);
    }

    // The check now sees both kinds; v1's code would pause the new ones,
    // the deprecation would pause the old ones, v2 pauses none.
    deploy(tag, Code::Old);
    assert_eq!(ids_that_would_pause(&stent).await, sorted(new.clone()));
    deploy(tag, Code::Deprecated);
    assert_eq!(ids_that_would_pause(&stent).await, sorted(old.clone()));
    deploy(tag, Code::Removed);
    assert_eq!(ids_that_would_pause(&stent).await, sorted(old.clone()));
    deploy(tag, Code::Patched);
    assert!(ids_that_would_pause(&stent).await.is_empty());

    // On v2, one old and one new execution finish, each on its own branch.
    let worker = TestWorker::start(&stent).await;
    assert_eq!(finish(&stent, old[0]).await.unwrap(), "road-1 ok");
    assert_eq!(finish(&stent, new[0]).await.unwrap(), "air-3 ok");
    worker.stop().await;

    // The patch is deprecated too early: the old execution still waiting
    // pauses with a report naming the patch; the new one finishes.
    deploy(tag, Code::Deprecated);
    let worker = TestWorker::start(&stent).await;
    let err = finish(&stent, old[1]).await.unwrap_err();
    assert!(matches!(err, Error::NonDeterminism { .. }), "{err}");
    let state = stent.state_of(old[1]).await.unwrap();
    assert_eq!(state.state, ExecutionStatus::Paused);
    let pause = state.pause.expect("a pause report");
    let d = pause.divergence.clone().expect("a divergence");
    assert_eq!(d.kind, DivergenceKind::PatchRemoved);
    assert_eq!(d.patch.as_deref(), Some("ship-by-air"));
    assert_eq!(d.seq, Seq(1));
    assert!(pause.text.contains("\"ship-by-air\""), "{}", pause.text);
    assert!(pause.text.contains("removed too early"), "{}", pause.text);
    assert!(
        pause.summary().contains("ship-by-air"),
        "{}",
        pause.summary()
    );
    assert_eq!(finish(&stent, new[1]).await.unwrap(), "air-4 ok");
    // A new execution on the deprecated code still records the marker.
    let late = stent.dispatch(deliver(tag.into(), 5)).await.unwrap();
    until_waiting(&stent, late).await;
    assert!(has_marker(&stent, late).await);
    worker.stop().await;

    // The deploy check says the paused one would go on with v2 again,
    // and writes nothing: the same counts and journals after it.
    deploy(tag, Code::Patched);
    let before = stent.stats().await.unwrap();
    let journal_before = stent
        .backend()
        .read_execution_journal(old[1], None)
        .await
        .unwrap();
    let report = DeployCheck::new().run(&stent).await.unwrap();
    assert_eq!(report.would_resume, vec![old[1]], "{report}");
    assert!(report.is_safe(), "{report}");
    assert_eq!(stent.stats().await.unwrap(), before);
    assert_eq!(
        stent
            .backend()
            .read_execution_journal(old[1], None)
            .await
            .unwrap(),
        journal_before
    );
    assert_eq!(
        stent.state_of(old[1]).await.unwrap().state,
        ExecutionStatus::Paused
    );

    // Rolled back to v2 and resumed, it finishes on the old branch.
    stent.resume(old[1]).await.unwrap();
    let worker = TestWorker::start(&stent).await;
    assert_eq!(
        stent
            .wait_for::<String, String>(old[1], Some(Duration::from_secs(20)))
            .await
            .unwrap()
            .unwrap(),
        "road-2 ok"
    );
    worker.stop().await;

    // The patch call removed entirely: the marker is stepped over.
    deploy(tag, Code::Removed);
    let worker = TestWorker::start(&stent).await;
    assert_eq!(finish(&stent, late).await.unwrap(), "air-5 ok");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("stent-patch-{}", ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = SqliteBackend::open(dir.join("stent.db")).await.unwrap();
    backend.init_db().await.unwrap();
    a_patch_from_start_to_removal(Stent::new(backend), "sqlite").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_postgres() {
    let Some(schema) = stent_tests::pg_test_schema("patch").await else {
        return;
    };
    a_patch_from_start_to_removal(Stent::new(schema.backend.clone()), "postgres").await;
}

/// The replay debugger shows the marker and names the patch a deprecation
/// removed too early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_debugger_names_a_patch_removed_too_early() {
    let tag = "debugger";
    let stent = Stent::new(stent::backends::MemoryBackend::new());
    deploy(tag, Code::Old);
    let old = start(&stent, tag, &[1]).await;
    deploy(tag, Code::Patched);
    let new = start(&stent, tag, &[2]).await;
    deploy(tag, Code::Deprecated);
    let replayer = stent::debugger::Replayer::for_stent(&stent);
    let report = replayer.replay_stored(&stent, new[0]).await.unwrap();
    assert!(report.is_clean(), "{report}");
    let report = replayer.replay_stored(&stent, old[0]).await.unwrap();
    let d = report.first_divergence().expect("a divergence");
    assert_eq!(
        d.reason,
        DivergenceReason::PatchRemoved {
            patch: "ship-by-air".into()
        }
    );
    assert!(report.to_string().contains("\"ship-by-air\""), "{report}");
}

/// Which version of `versions::quote` the flow calls (one test uses it).
static QUOTE_V2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[stent::durable(name = "versions::quote", version = "1", cached)]
async fn quote_v1(item: u32) -> Result<u32, String> {
    Ok(item * 10)
}

#[stent::durable(name = "versions::quote", version = "2", cached)]
async fn quote_v2(item: u32) -> Result<u32, String> {
    Ok(item * 20)
}

#[stent::durable]
async fn priced(item: u32) -> Result<String, String> {
    let price = if QUOTE_V2.load(std::sync::atomic::Ordering::SeqCst) {
        quote_v2(item).await?
    } else {
        quote_v1(item).await?
    };
    let note: String = Stent::wait_for_signal("delivered")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{price} {note}"))
}

fn registry_with_quote(v2: bool) -> stent::FunctionRegistry {
    let mut registry = stent::FunctionRegistry::new();
    registry.register(priced);
    if v2 {
        registry.register(quote_v2);
    } else {
        registry.register(quote_v1);
    }
    registry
}

/// A new `version` of a called function: calls recorded under the old
/// version (run, or answered from the cache) replay with their recorded
/// results; new calls use the new version and its own cache entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_function_version_replays_calls_recorded_under_the_old_one() {
    let dir = std::env::temp_dir().join(format!("stent-version-{}", ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = SqliteBackend::open(dir.join("stent.db")).await.unwrap();
    backend.init_db().await.unwrap();
    let v1 = Stent::builder(backend.clone())
        .function_registry(registry_with_quote(false))
        .build();
    // The first execution runs quote v1; the second finds its cached result.
    let first = v1.dispatch(priced(3)).await.unwrap();
    let worker = TestWorker::start(&v1).await;
    until_waiting(&v1, first).await;
    let second = v1.dispatch(priced(3)).await.unwrap();
    until_waiting(&v1, second).await;
    worker.stop().await;
    let kinds: Vec<String> = v1
        .backend()
        .read_journal(second.root_invocation(), Seq(0))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds[1], "cache_hit", "{kinds:?}");

    // Version 2 is deployed; both replay their recorded v1 answers.
    QUOTE_V2.store(true, std::sync::atomic::Ordering::SeqCst);
    let v2 = Stent::builder(backend)
        .function_registry(registry_with_quote(true))
        .build();
    let report = DeployCheck::new().run(&v2).await.unwrap();
    assert!(report.is_safe(), "{report}");
    let worker = TestWorker::start(&v2).await;
    assert_eq!(finish(&v2, first).await.unwrap(), "30 ok");
    assert_eq!(finish(&v2, second).await.unwrap(), "30 ok");
    // A new execution calls version 2: a new call key, so no v1 cache hit.
    let third = v2.dispatch(priced(3)).await.unwrap();
    assert_eq!(finish(&v2, third).await.unwrap(), "60 ok");
    worker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------ code versions

/// One workflow, two builds: each says which build ran its first step and
/// its end.
macro_rules! build_of_flow {
    ($def:ident, $version:literal) => {
        struct $def;

        impl stent::DurableFn for $def {
            type Args = (u32,);
            type Output = String;
            type Error = String;
            const NAME: &'static str = "versions::pinned_flow";

            fn options() -> stent::DurableOptions<Self::Args> {
                stent::DurableOptions::new()
            }

            fn run(args: Self::Args) -> stent::BoxFuture<Result<String, String>> {
                let _ = args;
                Box::pin(async move {
                    let _: String = Stent::wait_for_signal("go")
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok($version.to_string())
                })
            }
        }
    };
}

build_of_flow!(FlowV1, "v1");
build_of_flow!(FlowV2, "v2");

fn deployment<D: stent::DurableFn>(
    backend: impl stent::journal::store::Backend + Clone,
    version: Option<&str>,
) -> Stent {
    let mut registry = stent::FunctionRegistry::new();
    registry.register_def::<D>();
    let builder = Stent::builder(backend).function_registry(registry);
    match version {
        Some(v) => builder.code_version(v),
        None => builder,
    }
    .build()
}

/// Old and new workers side by side: each claims only its version's
/// executions (and pins those dispatched without a version), so every
/// execution ends on the code that started it.
async fn two_versions_side_by_side(backend: impl stent::journal::store::Backend + Clone) {
    let v1 = deployment::<FlowV1>(backend.clone(), Some("v1"));
    let v2 = deployment::<FlowV2>(backend.clone(), Some("v2"));
    let unversioned = deployment::<FlowV1>(backend.clone(), None);
    let w1 = TestWorker::start(&v1).await;
    let w2 = TestWorker::start(&v2).await;
    // Dispatched from executors without workers (as a web server would),
    // so every execution goes through a claim.
    let d1 = deployment::<FlowV1>(backend.clone(), Some("v1"));
    let d2 = deployment::<FlowV2>(backend.clone(), Some("v2"));
    let mut mine = Vec::new();
    for n in 0..4 {
        mine.push((
            "v1",
            d1.dispatch(stent::Call::<FlowV1>::new((n,))).await.unwrap(),
        ));
        mine.push((
            "v2",
            d2.dispatch(stent::Call::<FlowV2>::new((n,))).await.unwrap(),
        ));
    }
    let mut free = Vec::new();
    for n in 0..4 {
        free.push(
            unversioned
                .dispatch(stent::Call::<FlowV1>::new((n,)))
                .await
                .unwrap(),
        );
    }
    for &(_, id) in &mine {
        until_waiting(&v1, id).await;
    }
    for &id in &free {
        until_waiting(&v1, id).await;
    }
    // Every execution is pinned now: those dispatched without a version
    // took the version of the worker that claimed them.
    let stats = v1.backend().stats(v1.clock_now()).await.unwrap();
    let pinned: u64 = stats.versions.iter().map(|(_, n)| n).sum();
    assert_eq!(pinned, 12, "{:?}", stats.versions);
    assert!(
        stats.versions.iter().all(|(v, _)| v.is_some()),
        "{:?}",
        stats.versions
    );
    // The deploy check of a build looks only at what its workers would
    // claim, unless told to look at every version.
    let v2_pinned = stats
        .versions
        .iter()
        .find(|(v, _)| v.as_deref() == Some("v2"))
        .map(|(_, n)| *n as usize)
        .unwrap_or(0);
    let report = DeployCheck::new().run(&v2).await.unwrap();
    assert_eq!(report.checked, v2_pinned, "{report}");
    assert_eq!(report.other_versions, 12 - v2_pinned, "{report}");
    let report = DeployCheck::new().also_runs(["v1"]).run(&v2).await.unwrap();
    assert_eq!((report.checked, report.other_versions), (12, 0), "{report}");
    let report = DeployCheck::new().all_versions().run(&v2).await.unwrap();
    assert_eq!(report.checked, 12, "{report}");
    for (version, id) in &mine {
        let state = v1.state_of(*id).await.unwrap();
        assert_eq!(state.code_version.as_deref(), Some(*version));
        v1.send_signal(*id, "go", &"now").await.unwrap();
        let out = v1
            .wait_for::<String, String>(*id, Some(Duration::from_secs(20)))
            .await
            .unwrap();
        assert_eq!(out.as_deref(), Ok(*version), "{id}");
    }
    for &id in &free {
        let pinned = v1.state_of(id).await.unwrap().code_version.unwrap();
        v1.send_signal(id, "go", &"now").await.unwrap();
        let out = v1
            .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
            .await
            .unwrap();
        assert_eq!(out, Ok(pinned), "{id}");
    }
    w1.stop().await;
    w2.stop().await;
    let stats = v1.backend().stats(v1.clock_now()).await.unwrap();
    assert!(stats.versions.is_empty(), "{:?}", stats.versions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_side_by_side_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("stent-pin-{}", ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = SqliteBackend::open(dir.join("stent.db")).await.unwrap();
    backend.init_db().await.unwrap();
    two_versions_side_by_side(backend).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_side_by_side_on_postgres() {
    let Some(schema) = stent_tests::pg_test_schema("pin").await else {
        return;
    };
    two_versions_side_by_side(schema.backend.clone()).await;
}

/// The same with two worker processes of different code versions on one
/// SQLite file: each finishes only its own executions, and those
/// dispatched without a version end on the version that started them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_of_different_versions_finish_their_own() {
    use stent_tests::versions::{VERSION_VAR, versioned_flow};
    let dir = std::env::temp_dir().join(format!("stent-pin-procs-{}", ExecutionId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("stent.db");
    let backend = SqliteBackend::open(&db).await.unwrap();
    backend.init_db().await.unwrap();
    let spawn = |version: &str| {
        let log = std::fs::File::create(dir.join(format!("worker-{version}.log"))).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_stent-version-worker"))
            .arg(&db)
            .env(VERSION_VAR, version)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the worker")
    };
    let mut workers = vec![spawn("v1"), spawn("v2")];
    let by_version = |v: Option<&str>| {
        let builder = Stent::builder(backend.clone());
        match v {
            Some(v) => builder.code_version(v),
            None => builder,
        }
        .build()
    };
    let (d1, d2, d0) = (
        by_version(Some("v1")),
        by_version(Some("v2")),
        by_version(None),
    );
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push((Some("v1"), d1.dispatch(versioned_flow(n)).await.unwrap()));
        ids.push((Some("v2"), d2.dispatch(versioned_flow(n)).await.unwrap()));
        ids.push((None, d0.dispatch(versioned_flow(n)).await.unwrap()));
    }
    for &(_, id) in &ids {
        until_waiting(&d0, id).await;
    }
    let mut ran = std::collections::BTreeMap::new();
    for &(dispatched, id) in &ids {
        d0.send_signal(id, "go", &"now").await.unwrap();
        let out = d0
            .wait_for::<String, String>(id, Some(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
        let pinned = d0.state_of(id).await.unwrap().code_version.unwrap();
        // Started and finished by the same version: the pinned one.
        assert_eq!(out, format!("{pinned}->{pinned}"), "{id}");
        if let Some(v) = dispatched {
            assert_eq!(pinned, v, "{id}");
        }
        *ran.entry(pinned).or_insert(0) += 1;
    }
    // Both processes did work.
    assert!(ran.get("v1").copied().unwrap_or(0) >= 5, "{ran:?}");
    assert!(ran.get("v2").copied().unwrap_or(0) >= 5, "{ran:?}");
    for w in &mut workers {
        w.start_kill().unwrap();
        w.wait().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
