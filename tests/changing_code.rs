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

    // The deploy check says the paused one would go on with v2 again.
    deploy(tag, Code::Patched);
    let report = DeployCheck::new().run(&stent).await.unwrap();
    assert_eq!(report.would_resume, vec![old[1]], "{report}");
    assert!(report.is_safe(), "{report}");

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
