//! Crash recovery: a worker process is SIGKILLed between steps, inside a
//! step, during a durable sleep and while waiting for a signal; a fresh
//! worker takes over each time. The execution must end with the right
//! result, and no step that had completed before a kill may run again
//! (counted in a log file outside the engine).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use stent::Stent;
use stent::backends::SqliteBackend;
use stent_journal::Seq;
use stent_tests::crash::{crash_flow, read_log};
use tokio::process::{Child, Command};

fn spawn_worker(db: &Path, dir: &Path, n: u32) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).expect("worker log");
    Command::new(env!("CARGO_BIN_EXE_stent-crash-worker"))
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn worker")
}

async fn kill(mut child: Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reap");
}

/// Polls `check` until it holds; fails the test after `limit`.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn journal_kinds(executor: &Stent, id: stent::ExecutionId) -> Vec<String> {
    executor
        .backend()
        .read_journal(id.root_invocation(), Seq(0))
        .await
        .expect("read journal")
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

fn count(log: &[String], line: &str) -> usize {
    log.iter().filter(|l| *l == line).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_loses_nothing_and_reruns_no_completed_step() {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "stent-recovery-{}",
        stent::ExecutionId::new_random()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("stent.db");
    let backend = SqliteBackend::open(&db).await.unwrap();
    backend.init_db().await.unwrap();
    let executor = Stent::new(backend);
    let dir_s = dir.to_string_lossy().to_string();
    let id = executor.dispatch(crash_flow(dir_s.clone())).await.unwrap();
    let limit = Duration::from_secs(30);

    // 1. Between steps: as soon as step 1's result is journaled.
    let w = spawn_worker(&db, &dir, 1);
    until("step 1 is journaled", limit, || async {
        journal_kinds(&executor, id)
            .await
            .iter()
            .any(|k| k == "call_completed")
    })
    .await;
    kill(w).await;

    // 2. Inside a step: a fresh run of step 2 has begun and not finished.
    let begun = count(&read_log(&dir_s), "begin 2");
    let w = spawn_worker(&db, &dir, 2);
    until("step 2 begins again", limit, || async {
        count(&read_log(&dir_s), "begin 2") > begun
    })
    .await;
    assert_eq!(count(&read_log(&dir_s), "done 2"), 0);
    kill(w).await;

    // 3. During the durable sleep.
    let w = spawn_worker(&db, &dir, 3);
    until("the sleep starts", limit, || async {
        journal_kinds(&executor, id)
            .await
            .iter()
            .any(|k| k == "timer_started")
    })
    .await;
    kill(w).await;

    // 4. While waiting for the signal.
    let w = spawn_worker(&db, &dir, 4);
    until("the signal wait starts", limit, || async {
        journal_kinds(&executor, id)
            .await
            .iter()
            .any(|k| k == "signal_awaited")
    })
    .await;
    kill(w).await;

    executor.send_signal(id, "go", &7u32).await.unwrap();
    let w = spawn_worker(&db, &dir, 5);
    let out = executor
        .wait_for::<u32, String>(id, Some(limit))
        .await
        .expect("execution finishes");
    kill(w).await;
    assert_eq!(out, Ok(10 + 20 + 30 + 7));

    let log = read_log(&dir_s);
    assert_eq!(
        count(&log, "begin 1"),
        1,
        "step 1 completed before any kill: {log:?}"
    );
    assert_eq!(count(&log, "done 1"), 1, "{log:?}");
    assert_eq!(count(&log, "done 2"), 1, "{log:?}");
    assert_eq!(count(&log, "begin 3"), 1, "{log:?}");
    assert_eq!(count(&log, "done 3"), 1, "{log:?}");
    let kinds = journal_kinds(&executor, id).await;
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("completed"),
        "{kinds:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
