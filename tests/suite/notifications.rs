//! Notification backends: the same workflow with each of them (in-process,
//! none, Redis, PostgreSQL), wake-ups between two executors that share only
//! the database (as two processes would), and a notifier that loses its
//! connection. PostgreSQL and Redis tests are skipped without the server
//! unless `STENT_REQUIRE_SERVICES=1`, which makes a missing server a failure.

use std::time::Duration;

use stent::backends::PostgresBackend;
use stent::notifications::{
    InProcessNotifier, NoNotifications, NotificationBackend, PostgresNotifier, RedisNotifier,
};
use stent::{ExecutionId, Stent};
use stent_tests::TestWorker;

/// Longer than any test may run: with these poll intervals only a
/// notification gets an idle worker or a waiter going again.
const NEVER: Duration = Duration::from_secs(3600);
/// Generous bound on a run that notifications make quick.
const BOUND: Duration = Duration::from_secs(30);

async fn pg() -> Option<stent_tests::PgTestSchema> {
    stent_tests::pg_test_schema("stent_notify_test").await
}

fn redis_url() -> String {
    stent_test_services::redis_url()
}

/// A Redis connection for the test's own commands, or `None` when nothing
/// answers at the URL (the skip is recorded; a failure when services are
/// required). Once the server answers, any error is a failure.
async fn redis() -> Option<redis::aio::MultiplexedConnection> {
    let url = redis_url();
    if !stent_test_services::available("Redis", &url) {
        return None;
    }
    let conn = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), conn).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => panic!("Redis at {url} answers but: {e}"),
        Err(_) => panic!("Redis at {url} accepts connections but does not answer"),
    }
}

#[stent::durable]
async fn notify_step(i: u64) -> Result<u64, String> {
    Ok(i * 2)
}

#[stent::durable]
async fn notify_flow(n: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..n {
        acc += notify_step(i).await?;
    }
    let bonus: u64 = Stent::wait_for_signal("bonus")
        .await
        .map_err(|e| e.to_string())?;
    Ok(acc + bonus)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    InProcess,
    None,
    Redis,
    Postgres,
}

/// A fresh notifier of `kind` (Redis on `channel`).
fn notifier(
    kind: Kind,
    backend: &PostgresBackend,
    channel: &str,
) -> Box<dyn FnOnce(stent::StentBuilder) -> stent::StentBuilder> {
    fn with(
        n: impl NotificationBackend,
    ) -> Box<dyn FnOnce(stent::StentBuilder) -> stent::StentBuilder> {
        Box::new(move |b| b.notification_backend(n))
    }
    match kind {
        Kind::InProcess => with(InProcessNotifier),
        Kind::None => with(NoNotifications),
        Kind::Redis => with(
            RedisNotifier::new(&redis_url())
                .expect("redis url")
                .channel(channel),
        ),
        Kind::Postgres => with(PostgresNotifier::new(backend)),
    }
}

/// Two executors on one database, as two processes: one runs a worker,
/// the other dispatches, signals and waits. Only cross-process
/// notifications can wake them when they poll rarely (`poll`).
async fn two_executors(kind: Kind, poll: Duration) {
    let Some(db) = pg().await else { return };
    let backend = db.backend.clone();
    if matches!(kind, Kind::Redis) && redis().await.is_none() {
        return;
    }
    let channel = format!("stent-test:{}", ExecutionId::new_random());
    let server = notifier(kind, &backend, &channel)(Stent::builder(backend.clone()))
        .poll_max_interval(poll)
        .build();
    let client = notifier(kind, &backend, &channel)(Stent::builder(backend.clone()))
        .poll_min_interval(poll)
        .poll_max_interval(poll)
        .build();
    let worker = TestWorker::start_with(&server, |w| {
        w.poll_min_interval(poll).poll_max_interval(poll)
    })
    .await;
    // Both executors listen before the first message that matters.
    wait_until_listening(kind, &backend, &channel, 2).await;
    // The worker went idle (its first claim found nothing) before the dispatch.
    for round in 0..3u64 {
        let id = client.dispatch(notify_flow(4)).await.unwrap();
        client.send_signal(id, "bonus", &round).await.unwrap();
        let out = client
            .wait_for::<u64, String>(id, Some(BOUND))
            .await
            .unwrap_or_else(|e| panic!("{kind:?}, round {round}: {e}"));
        assert_eq!(out, Ok(12 + round), "{kind:?}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wakes_workers_and_waiters_of_another_executor() {
    two_executors(Kind::Redis, NEVER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_workers_and_waiters_of_another_executor() {
    two_executors(Kind::Postgres, NEVER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_polling_finds_the_work() {
    two_executors(Kind::None, Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_notifications_leave_other_executors_to_polling() {
    two_executors(Kind::InProcess, Duration::from_millis(50)).await;
}

/// One executor, every notifier: the in-process path (local dispatch,
/// child hand-offs, signal wake-ups, wait_for) works the same with each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_executor_runs_the_same_with_every_notifier() {
    let Some(db) = pg().await else { return };
    let backend = db.backend.clone();
    let has_redis = redis().await.is_some();
    for kind in [Kind::InProcess, Kind::None, Kind::Redis, Kind::Postgres] {
        if matches!(kind, Kind::Redis) && !has_redis {
            continue;
        }
        let channel = format!("stent-test:{}", ExecutionId::new_random());
        let executor = notifier(kind, &backend, &channel)(Stent::builder(backend.clone()))
            .poll_min_interval(Duration::from_millis(20))
            .poll_max_interval(Duration::from_millis(200))
            .build();
        let worker = TestWorker::start_with(&executor, |w| {
            w.poll_min_interval(Duration::from_millis(20))
        })
        .await;
        let ids: Vec<ExecutionId> = futures_join(&executor, 5).await;
        for (i, id) in ids.into_iter().enumerate() {
            executor
                .send_signal(id, "bonus", &(i as u64))
                .await
                .unwrap();
            let out = executor
                .wait_for::<u64, String>(id, Some(BOUND))
                .await
                .unwrap();
            assert_eq!(out, Ok(20 + i as u64), "{kind:?}");
        }
        worker.stop().await;
    }
}

async fn futures_join(executor: &Stent, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(executor.dispatch(notify_flow(5)).await.unwrap());
    }
    ids
}

/// A notifier whose server is unreachable costs latency only: the worker
/// keeps serving by polling and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_notifier_never_fails_the_worker() {
    let Some(db) = pg().await else { return };
    let backend = db.backend.clone();
    // Nothing listens on port 1.
    let dead = RedisNotifier::new("redis://127.0.0.1:1").unwrap();
    let executor = Stent::builder(backend)
        .notification_backend(dead)
        .poll_min_interval(Duration::from_millis(20))
        .poll_max_interval(Duration::from_millis(100))
        .build();
    let worker = TestWorker::start_with(&executor, |w| {
        w.poll_min_interval(Duration::from_millis(20))
            .poll_max_interval(Duration::from_millis(100))
    })
    .await;
    let id = executor.dispatch(notify_flow(3)).await.unwrap();
    executor.send_signal(id, "bonus", &1u64).await.unwrap();
    let out = executor.wait_for::<u64, String>(id, Some(BOUND)).await;
    assert_eq!(out.unwrap(), Ok(7));
    worker.stop().await;
}

/// Waits until `n` executors listen on the transport of `kind` (nothing to
/// wait for with the in-process kinds).
async fn wait_until_listening(kind: Kind, backend: &PostgresBackend, channel: &str, n: i64) {
    match kind {
        Kind::InProcess | Kind::None => {}
        Kind::Redis => {
            let Some(admin) = redis().await else { return };
            eventually("Redis subscriptions", || {
                let mut admin = admin.clone();
                let channel = channel.to_string();
                async move {
                    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(&channel)
                        .query_async(&mut admin)
                        .await
                        .unwrap_or_default();
                    counts.first().map(|(_, k)| *k) == Some(n)
                }
            })
            .await
        }
        Kind::Postgres => {
            let listen = format!("LISTEN \"{}\"", backend.notification_channel());
            eventually("PostgreSQL listeners", || {
                let pool = backend.pool().clone();
                let listen = listen.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE query = $1",
                    )
                    .bind(listen)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0)
                        == n
                }
            })
            .await
        }
    }
}

/// Waits until `check` holds, polling (test scaffolding, not an assertion
/// on time).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 30 s");
}

/// The Redis subscription is killed server-side: the notifier reconnects
/// and wake-ups work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_notifier_resubscribes_after_losing_its_connection() {
    let Some(db) = pg().await else { return };
    let backend = db.backend.clone();
    let Some(mut admin) = redis().await else {
        return;
    };
    let channel = format!("stent-test:{}", ExecutionId::new_random());
    let make = || {
        RedisNotifier::new(&redis_url())
            .unwrap()
            .channel(channel.clone())
    };
    let server = Stent::builder(backend.clone())
        .notification_backend(make())
        .build();
    let client = Stent::builder(backend.clone())
        .notification_backend(make())
        .poll_min_interval(NEVER)
        .poll_max_interval(NEVER)
        .build();
    let worker = TestWorker::start_with(&server, |w| {
        w.poll_min_interval(NEVER).poll_max_interval(NEVER)
    })
    .await;
    let subscribers = |admin: &mut redis::aio::MultiplexedConnection| {
        let mut admin = admin.clone();
        let channel = channel.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut admin)
                .await
                .unwrap_or_default();
            counts.first().map(|(_, n)| *n).unwrap_or(0)
        }
    };
    // The client subscribes at its first wait_for: run one round first.
    assert_eq!(signalled_flow(&client, 0).await, 2);
    eventually("both executors subscribed", || {
        subscribers(&mut admin).then_some_eq(2)
    })
    .await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    eventually("both executors subscribed again", || {
        subscribers(&mut admin).then_some_eq(2)
    })
    .await;
    assert_eq!(signalled_flow(&client, 1).await, 3);
    worker.stop().await;
}

/// The PostgreSQL listener's connection is terminated: the notifier
/// listens again and wake-ups work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifier_listens_again_after_losing_its_connection() {
    let Some(db) = pg().await else { return };
    let backend = db.backend.clone();
    let notifier = PostgresNotifier::new(&backend);
    let listen = format!("LISTEN \"{}\"", notifier.channel());
    let server = Stent::builder(backend.clone())
        .notification_backend(notifier)
        .build();
    let client = Stent::builder(backend.clone())
        .notification_backend(PostgresNotifier::new(&backend))
        .poll_min_interval(NEVER)
        .poll_max_interval(NEVER)
        .build();
    let worker = TestWorker::start_with(&server, |w| {
        w.poll_min_interval(NEVER).poll_max_interval(NEVER)
    })
    .await;
    let listeners = || {
        let pool = backend.pool().clone();
        let listen = listen.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE query = $1 AND state = 'idle'",
            )
            .bind(listen)
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
        }
    };
    assert_eq!(signalled_flow(&client, 0).await, 2);
    eventually("both executors listening", || listeners().then_some_eq(2)).await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1")
        .bind(&listen)
        .execute(backend.pool())
        .await
        .unwrap();
    eventually("both executors listening again", || {
        listeners().then_some_eq(2)
    })
    .await;
    assert_eq!(signalled_flow(&client, 1).await, 3);
    worker.stop().await;
}

/// Dispatches `notify_flow(2)` from `client`, signals it `bonus` and
/// waits (at most `BOUND`) for its result.
async fn signalled_flow(client: &Stent, bonus: u64) -> u64 {
    let id = client.dispatch(notify_flow(2)).await.unwrap();
    client.send_signal(id, "bonus", &bonus).await.unwrap();
    client
        .wait_for::<u64, String>(id, Some(BOUND))
        .await
        .unwrap()
        .unwrap()
}

/// `fut.then_some_eq(n)`: resolves to whether `fut` resolved to `n`.
trait ThenEq: std::future::Future<Output = i64> + Sized {
    fn then_some_eq(self, n: i64) -> impl std::future::Future<Output = bool> {
        async move { self.await == n }
    }
}

impl<F: std::future::Future<Output = i64>> ThenEq for F {}

/// A transport that loses every message, as one does while it is not
/// subscribed; the test says when it "subscribes again".
#[derive(Default, Clone)]
struct LosingNotifier {
    sinks: std::sync::Arc<std::sync::Mutex<Vec<stent::notifications::NotificationSink>>>,
}

impl NotificationBackend for LosingNotifier {
    fn start(&self, sink: stent::notifications::NotificationSink) {
        self.sinks.lock().unwrap().push(sink);
    }
    fn publish(&self, _message: &str) {}
}

impl LosingNotifier {
    fn resubscribe(&self) {
        for sink in self.sinks.lock().unwrap().iter() {
            sink.resubscribed();
        }
    }
}

/// Messages lost while a transport was not subscribed cost nothing once it
/// subscribes again: `NotificationSink::resubscribed` makes every idle
/// worker, waiter and waiting invocation check storage once.
#[tokio::test(start_paused = true)]
async fn a_resubscribed_notifier_makes_waiters_and_workers_check_again() {
    let storage = stent::backends::MemoryBackend::new();
    let server_notes = LosingNotifier::default();
    let client_notes = LosingNotifier::default();
    let server = Stent::builder(storage.clone())
        .notification_backend(server_notes.clone())
        .build();
    let client = Stent::builder(storage)
        .notification_backend(client_notes.clone())
        .poll_min_interval(NEVER)
        .poll_max_interval(NEVER)
        .build();
    let worker = TestWorker::start_with(&server, |w| {
        w.poll_min_interval(NEVER).poll_max_interval(NEVER)
    })
    .await;

    let id = client.dispatch(notify_flow(2)).await.unwrap();
    client.send_signal(id, "bonus", &5u64).await.unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait_for::<u64, String>(id, None).await }
    });
    // The worker's first poll happened before the dispatch and the "work"
    // message was lost: nothing runs.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        client.state_of(id).await.unwrap().state,
        stent::ExecutionStatus::Pending
    );

    server_notes.resubscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !client.state_of(id).await.unwrap().state.is_terminal() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never ran it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The "finished" message was lost too: the waiter still waits...
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!waiting.is_finished());
    // ...until its notifier subscribes again.
    client_notes.resubscribe();
    let out = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the waiter checked again")
        .unwrap()
        .unwrap();
    assert_eq!(out, Ok(2 + 5));
    worker.stop().await;
}
