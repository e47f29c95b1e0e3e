//! The engine end to end on PostgreSQL: nested calls, a durable sleep, a
//! signal and a retry, in a schema of its own. Skipped without a server
//! unless `STENT_REQUIRE_SERVICES=1`, which makes a missing server a failure.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::{RetryPolicy, Stent};
use stent_tests::TestWorker;

async fn backend() -> Option<stent_tests::PgTestSchema> {
    stent_tests::pg_test_schema("stent_engine_test").await
}

static FLAKES: AtomicU32 = AtomicU32::new(0);

fn quick_retry() -> RetryPolicy {
    RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(50))
}

#[stent::durable(retry_policy = quick_retry())]
async fn flaky_add(a: u64, b: u64) -> Result<u64, String> {
    if FLAKES.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("transient".into());
    }
    Ok(a + b)
}

#[stent::durable]
async fn pg_flow(n: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..n {
        acc = flaky_add(acc, i).await?;
    }
    Stent::sleep(Duration::from_millis(200))
        .await
        .map_err(|e| e.to_string())?;
    let bonus: u64 = Stent::wait_for_signal("bonus")
        .await
        .map_err(|e| e.to_string())?;
    let doubled = Stent::map(|x: u64| flaky_add(x, x), vec![1, 2, 3]).await?;
    Ok(acc + bonus + doubled.iter().sum::<u64>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_to_completion_on_postgres() {
    let Some(db) = backend().await else {
        return;
    };
    let executor = Stent::new(db.backend.clone());
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(pg_flow(10)).await.unwrap();
    executor.send_signal(id, "bonus", &100u64).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out, Ok(45 + 100 + 12));
    assert_eq!(executor.state_of(id).await.unwrap().retries, 1);
    worker.stop().await;
}

#[stent::durable]
async fn slow_step(i: u64) -> Result<u64, String> {
    // Long enough for the server to end every pooled session left idle.
    tokio::time::sleep(Duration::from_millis(250)).await;
    Ok(i)
}

#[stent::durable]
async fn slow_steps(n: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..n {
        acc += slow_step(i).await?;
    }
    Ok(acc)
}

/// An operator's `idle_session_timeout` ends pooled sessions that sat idle
/// (the server sends SQLSTATE 57P05 and closes them). The engine reads that
/// as the database being away for a moment: the worker recovers, and
/// `wait_for` keeps waiting instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_server_ends_for_idling_are_a_passing_fault() {
    let Some(db) = backend().await else {
        return;
    };
    let sep = if db.url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20idle_session_timeout%3D100", db.url());
    let backend = stent::backends::PostgresBackend::builder(&url)
        .schema(db.name())
        // No ping before reuse: a call meets the ended session itself.
        .check_connections(false)
        .max_connections(3)
        .build()
        .await
        .unwrap();
    // Short backoffs: every wait makes the pooled sessions idle again.
    let executor = Stent::builder(backend)
        .poll_max_interval(Duration::from_millis(300))
        .build();
    let worker = TestWorker::start_with(&executor, |w| {
        w.poll_max_interval(Duration::from_millis(300))
    })
    .await;
    let id = executor.dispatch(slow_steps(3)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, Ok(3));
    worker.stop().await;
}

#[stent::durable]
async fn child_step(i: u64) -> Result<u64, String> {
    Ok(i * 2)
}

#[stent::durable]
async fn fanned(n: u64) -> Result<u64, String> {
    let all = Stent::gather((0..n).map(child_step)).await;
    all.into_iter().sum()
}

/// A process of this build on a schema one migration behind (`init_db` not
/// run yet after an upgrade): without `stent_commit_set` (migration 9),
/// commits of many independent turns go through `stent_commit` instead,
/// and a fan-out still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_without_the_set_commit_function_still_commits_fan_outs() {
    let Some(db) = backend().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    // The schema name is the test's own, made of a prefix and hex digits.
    let drop = format!("DROP FUNCTION \"{}\".stent_commit_set", db.name());
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let executor = Stent::new(db.backend.clone());
    let worker = TestWorker::start(&executor).await;
    let n = 60;
    let id = executor.dispatch(fanned(n)).await.unwrap();
    let out = executor
        .wait_for::<u64, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, Ok(n * (n - 1)));
    worker.stop().await;
}
