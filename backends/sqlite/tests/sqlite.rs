//! SQLite-specific behaviour: files, migrations, corrupt rows, several
//! backends on one file, cancelled writes. The trait semantics are covered by
//! the conformance suite (`tests/conformance.rs`).

use std::collections::HashSet;
use std::path::Path;
use std::task::Poll;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use stent_conformance::step_turn as step;
use stent_journal::store::{
    ClaimRequest, ExecutionFilter, ExecutionStore, JournalStore, NewEvent, NewExecution,
    NewInvocation, Routing, StoreError, TaskDisposition, TaskStore,
};
use stent_journal::{EventKind, ExecutionId, LeaseEpoch, Seq, Timestamp, WorkerId};
use stent_sqlite::{SqliteBackend, Synchronous};

mod common;

use common::TempPath;

fn new_execution(function: &str, at: i64) -> NewExecution {
    let id = ExecutionId::new_random();
    NewExecution {
        id,
        function: function.into(),
        created_at: Timestamp(at),
        deadline: None,
        root: NewInvocation {
            invocation: id.root_invocation(),
            execution: id,
            function: function.into(),
            routing: Routing::default(),
            run_at: Timestamp(at),
            started_event: vec![0xa1, 0x00],
            lease: None,
        },
        code_version: None,
    }
}

fn claim_request(worker: &str, now: i64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker: WorkerId::new(worker),
        now: Timestamp(now),
        lease_until: Timestamp(now + 60_000),
        limit,
        queues: None,
        tags: None,
        functions: vec!["app::f".into()],
        concurrency_limits: Vec::new(),
        code_version: None,
        also_runs: Vec::new(),
    }
}

async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn open_existing_refuses_a_missing_file() {
    let tmp = TempPath::new("missing");
    match SqliteBackend::open_existing(&tmp.0).await {
        Err(StoreError::NotFound(msg)) => assert!(msg.contains("stent-sqlite-missing"), "{msg}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!tmp.0.exists(), "open_existing must not create the file");
}

#[tokio::test]
async fn init_db_is_idempotent_and_data_survives_reopen() {
    let tmp = TempPath::new("reopen");
    let exec = new_execution("app::f", 10);
    {
        let backend = SqliteBackend::open(&tmp.0).await.unwrap();
        assert_eq!(backend.path(), Some(tmp.0.as_path()));
        backend.init_db().await.unwrap();
        backend.init_db().await.unwrap();
        backend.create_execution(exec.clone()).await.unwrap();
    }
    let backend = SqliteBackend::open_existing(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();
    let rec = backend
        .execution(exec.id)
        .await
        .unwrap()
        .expect("persisted");
    assert_eq!(rec.function, "app::f");
    let rows = backend
        .read_journal(exec.root.invocation, Seq(0))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bytes, vec![0xa1, 0x00]);
}

#[tokio::test]
async fn file_is_readable_with_plain_sql() {
    let tmp = TempPath::new("readable");
    let backend = SqliteBackend::open(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();
    let mut exec = new_execution("app::f", 10);
    exec.root.routing.tags = vec!["gpu".into(), "a,b".into()];
    backend.create_execution(exec.clone()).await.unwrap();

    let mut conn = raw(&tmp.0).await;
    let (id, state, tags): (String, String, String) =
        sqlx::query_as("SELECT invocation_id, state, tags FROM tasks")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(id, exec.id.to_string());
    assert_eq!(state, "ready");
    assert_eq!(tags, r#"["gpu","a,b"]"#);
    let (status, created): (String, i64) =
        sqlx::query_as("SELECT status, created_at FROM executions")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((status.as_str(), created), ("pending", 10));
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let tmp = TempPath::new("corrupt");
    let backend = SqliteBackend::open(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();
    let good = new_execution("app::f", 10);
    backend.create_execution(good.clone()).await.unwrap();
    let mut conn = raw(&tmp.0).await;

    sqlx::query("UPDATE executions SET status = 'exploded' WHERE id = ?1")
        .bind(good.id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    match backend.execution(good.id).await {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains("executions.status"), "{msg}");
            assert!(msg.contains("exploded"), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    sqlx::query(
        "UPDATE executions SET status = 'pending', id = 'not-a-uuid', tags = '[]' WHERE id = ?1",
    )
    .bind(good.id.to_string())
    .execute(&mut conn)
    .await
    .unwrap();
    let filter = ExecutionFilter::default().limit(10).offset(0);
    match backend.list_executions(filter.clone()).await {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains("executions.id"), "{msg}");
            assert!(msg.contains("not-a-uuid"), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    sqlx::query("UPDATE executions SET id = ?1, tags = 'gpu,eu'")
        .bind(good.id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.list_executions(filter).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("executions.tags")
    ));

    sqlx::query("UPDATE journal SET seq = -1")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.read_journal(good.root.invocation, Seq(0)).await,
        Ok(rows) if rows.is_empty()
    ));
    sqlx::query("UPDATE journal SET seq = 5000000000")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.read_journal(good.root.invocation, Seq(0)).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("journal.seq")
    ));

    sqlx::query("UPDATE tasks SET execution_id = 'zzz'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.claim(claim_request("w", 20, 10)).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("tasks.execution_id")
    ));
    // The failed claim was rolled back: the task is still ready.
    let (state,): (String,) = sqlx::query_as("SELECT state FROM tasks")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(state, "ready");
}

#[tokio::test]
async fn missing_schema_is_a_database_error() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    match backend.execution(ExecutionId::new_random()).await {
        Err(StoreError::Database(e)) => {
            assert!(e.message().starts_with("execution:"), "{e}");
            assert!(e.message().contains("no such table"), "{e}");
            // SQLITE_ERROR: nothing to wait out.
            assert_eq!(e.code(), Some("1"), "{e}");
            assert!(!e.kind().is_transient(), "{e}");
        }
        other => panic!("expected Database, got {other:?}"),
    }
}

/// With many due tasks a claim walks the claim-order index instead of sorting
/// the due tasks (the conformance suite never has that many); the order and the
/// filters must come out the same.
#[tokio::test]
async fn claim_order_holds_with_a_large_backlog() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let mut expected = Vec::new();
    for i in 0..700i64 {
        let mut e = new_execution(if i % 5 == 0 { "app::g" } else { "app::f" }, 0);
        e.root.routing.priority = (i % 3) as i32;
        e.root.run_at = Timestamp(if i % 11 == 0 { 10_000 } else { (i * 7) % 50 });
        backend.create_execution(e.clone()).await.unwrap();
        if i % 5 != 0 && i % 11 != 0 {
            expected.push((-(i % 3), (i * 7) % 50, i, e.root.invocation));
        }
    }
    expected.sort();
    let expected: Vec<_> = expected.into_iter().map(|(_, _, _, inv)| inv).collect();
    // Enough for the first claims to take the many-due path, the last the few-due one.
    assert!(expected.len() > 256);
    let mut got = Vec::new();
    loop {
        let batch = backend.claim(claim_request("w", 100, 7)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().map(|c| c.invocation));
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "claims came out of order");
}

/// Two backends (think: two processes) on one file claim 40 tasks between
/// them, each exactly once: `BEGIN IMMEDIATE` plus the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_file_share_the_work() {
    let tmp = TempPath::new("shared");
    let a = SqliteBackend::builder(&tmp.0)
        .synchronous(Synchronous::Normal)
        .build()
        .await
        .unwrap();
    a.init_db().await.unwrap();
    let b = SqliteBackend::builder(&tmp.0)
        .synchronous(Synchronous::Normal)
        .max_connections(1)
        .busy_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    for i in 0..40 {
        a.create_execution(new_execution("app::f", i))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for (n, backend) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = backend
                    .claim(claim_request(&format!("w{n}"), 100, 2))
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                for c in &got {
                    backend
                        .commit(vec![step(c.invocation, c.epoch, 1)])
                        .await
                        .expect("commit");
                }
                mine.extend(got.into_iter().map(|c| c.invocation));
            }
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for inv in h.await.unwrap() {
            assert!(seen.insert(inv), "{inv} claimed twice");
        }
    }
    assert_eq!(seen.len(), 40);
    assert_eq!(a.queue_depth(None, Timestamp(100)).await.unwrap(), 0);
}

/// Polls `fut` (yielding in between) until it finishes or `budget` has
/// passed, then drops it.
async fn poll_for<F: Future>(fut: F, budget: Duration) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let deadline = tokio::time::Instant::now() + budget;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if tokio::time::Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Dropping a write half-way (a timeout, a cancelled task) rolls it back and
/// leaves the writer connection usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_commits_leave_nothing_behind() {
    let tmp = TempPath::new("cancel");
    let backend = SqliteBackend::open(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();
    let exec = new_execution("app::f", 0);
    backend.create_execution(exec.clone()).await.unwrap();
    let c = backend
        .claim(claim_request("w", 0, 1))
        .await
        .unwrap()
        .remove(0);
    let inv = exec.root.invocation;
    let mut next = 1u32;
    let mut cancelled = 0;
    for micros in (0..2_000).step_by(25) {
        let mut turn = step(inv, c.epoch, next);
        turn.events = (next..next + 20)
            .map(|s| NewEvent {
                seq: Seq(s),
                kind: EventKind::SideEffect,
                call_key: None,
                bytes: vec![s as u8; 256],
            })
            .collect();
        let res = poll_for(backend.commit(vec![turn]), Duration::from_micros(micros)).await;
        // A cancelled commit whose COMMIT was already sent may still land; any
        // later write on the same connection runs after it.
        let lost = backend
            .renew_leases(
                &WorkerId::new("w"),
                &[(inv, c.epoch)],
                Timestamp(0),
                Timestamp(1_000_000),
            )
            .await
            .unwrap();
        assert!(lost.is_empty());
        let rows = backend.read_journal(inv, Seq(next)).await.unwrap();
        match res {
            Some(r) => {
                r.unwrap();
                assert_eq!(rows.len(), 20);
                next += 20;
            }
            // Cancelled: either nothing or (if COMMIT had been sent) all of it.
            None => {
                cancelled += 1;
                assert!(rows.is_empty() || rows.len() == 20, "{} rows", rows.len());
                next += rows.len() as u32;
            }
        }
    }
    backend
        .commit(vec![step(inv, c.epoch, next)])
        .await
        .unwrap();
    let all = backend.read_journal(inv, Seq(0)).await.unwrap();
    assert_eq!(all.len() as u32, next + 1);
    assert!(all.iter().enumerate().all(|(i, r)| r.seq == Seq(i as u32)));
    eprintln!("{cancelled} of 80 commits cancelled, {next} events written");
}

/// A file created by the first schema version (tasks in every state of that
/// version, a live lease among them) is upgraded by `init_db`: its rows
/// survive with no retries, leases stay held, and the new features work on it.
#[tokio::test]
async fn init_db_upgrades_a_version_1_file() {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use stent_journal::store::{CacheStore, DeadLetterStore, IdempotencyBegin, IdempotencyStore};

    let tmp = TempPath::new("upgrade");
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", tmp.0.display()))
        .await
        .expect("create file");
    let v1 = Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/0001_init.sql").into_sql_str(),
        false,
    )]);
    v1.run(&mut conn).await.expect("schema version 1");
    let states = ["ready", "leased", "waiting", "done", "paused"];
    let execs: Vec<NewExecution> = states
        .iter()
        .enumerate()
        .map(|(i, _)| new_execution("app::f", i as i64))
        .collect();
    for (i, (e, state)) in execs.iter().zip(states).enumerate() {
        sqlx::query(
            "INSERT INTO executions (id, function, status, queue, priority, tags, created_at) \
             VALUES (?1, 'app::f', 'running', 'default', 0, '[]', ?2)",
        )
        .bind(e.id.to_string())
        .bind(i as i64)
        .execute(&mut conn)
        .await
        .unwrap();
        let leased = state == "leased";
        sqlx::query(
            "INSERT INTO tasks (invocation_id, execution_id, function, queue, priority, tags, \
             state, run_at, lease_owner, lease_until, epoch, attempts, wake, created) \
             VALUES (?1, ?2, 'app::f', 'default', 0, '[]', ?3, 0, ?4, ?5, ?6, ?6, 0, ?7)",
        )
        .bind(e.root.invocation.to_string())
        .bind(e.id.to_string())
        .bind(state)
        .bind(leased.then_some("w-old"))
        .bind(leased.then_some(1_000_000i64))
        .bind(if state == "ready" { 0i64 } else { 3 })
        .bind(i as i64 + 1)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
             VALUES (?1, 0, 'started', NULL, X'A0', ?2)",
        )
        .bind(e.root.invocation.to_string())
        .bind(i as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let backend = SqliteBackend::open_existing(&tmp.0).await.unwrap();
    backend.init_db().await.unwrap();
    backend.init_db().await.unwrap();
    let mut conn = raw(&tmp.0).await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT invocation_id, state, retries, created FROM tasks ORDER BY created")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 5);
    for ((e, state), (id, stored, retries, created)) in execs.iter().zip(states).zip(&rows) {
        assert_eq!(id, &e.root.invocation.to_string());
        assert_eq!(stored, state);
        assert_eq!(*retries, 0);
        assert!(*created > 0);
    }
    for e in &execs {
        let rec = backend.execution(e.id).await.unwrap().expect("kept");
        assert_eq!(rec.retries, 0);
        assert_eq!(
            backend
                .read_journal(e.root.invocation, Seq(0))
                .await
                .unwrap()
                .len(),
            1
        );
    }

    // The lease taken before the upgrade is still held and fences writes.
    let leased = execs[1].root.invocation;
    let lost = backend
        .renew_leases(
            &WorkerId::new("w-old"),
            &[(leased, LeaseEpoch(3))],
            Timestamp(0),
            Timestamp(2_000_000),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    // Only the ready task is claimable; new features work on the old rows.
    let claimed = backend.claim(claim_request("w", 10, 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].invocation, execs[0].root.invocation);
    assert_eq!((claimed[0].attempts, claimed[0].retries), (1, 0));
    let mut t = step(leased, LeaseEpoch(3), 1);
    t.cache_put = vec![(stent_journal::CallKey([9; 32]), b"v".to_vec())];
    t.disposition = TaskDisposition::DeadLetter {
        reason: "after upgrade".into(),
    };
    backend.commit(vec![t]).await.unwrap();
    assert_eq!(
        backend
            .cache_get(stent_journal::CallKey([9; 32]))
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    let letters = backend.list_dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].task, leased);
    assert_eq!(
        backend.begin_idempotent("k", leased).await.unwrap(),
        IdempotencyBegin::Owner
    );
}

/// Concurrency limits hold on the path a claim takes with a large backlog
/// (many due tasks): the limited function gets at most its free slots, the
/// rest of each batch comes from the unlimited one in claim order.
#[tokio::test]
async fn concurrency_limits_hold_with_a_large_backlog() {
    let backend = SqliteBackend::in_memory().await.unwrap();
    backend.init_db().await.unwrap();
    let mut limited = Vec::new();
    let mut free = Vec::new();
    for i in 0..600i64 {
        let function = if i % 2 == 0 { "app::f" } else { "app::g" };
        let mut e = new_execution(function, 0);
        e.root.routing.priority = (i % 3) as i32;
        e.root.run_at = Timestamp(i % 40);
        backend.create_execution(e.clone()).await.unwrap();
        let key = (-(i % 3), i % 40, i, e.root.invocation);
        if function == "app::f" {
            limited.push(key);
        } else {
            free.push(key);
        }
    }
    limited.sort();
    free.sort();
    let request = |limit: usize| {
        let mut r = claim_request("w", 100, limit);
        r.functions = vec!["app::f".into(), "app::g".into()];
        r.concurrency_limits = vec![("app::f".into(), 3)];
        r
    };
    // First batch: the three first limited tasks and the first free ones,
    // merged in claim order.
    let got: Vec<_> = backend
        .claim(request(10))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.invocation)
        .collect();
    let mut expected: Vec<_> = limited[..3].iter().chain(&free[..10]).copied().collect();
    expected.sort();
    let expected: Vec<_> = expected[..10].iter().map(|k| k.3).collect();
    assert_eq!(got, expected);
    let is_limited = |id: &stent_journal::InvocationId| limited.iter().any(|k| k.3 == *id);
    let mut limited_taken = got.iter().filter(|id| is_limited(id)).count();
    let mut taken_free = got.len() - limited_taken;
    // Later batches fill the free slots (if the first batch left any) and
    // never go past three limited leases.
    loop {
        let batch = backend.claim(request(50)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let new_limited = batch.iter().filter(|c| is_limited(&c.invocation)).count();
        limited_taken += new_limited;
        taken_free += batch.len() - new_limited;
        assert!(limited_taken <= 3, "{limited_taken} limited tasks leased");
    }
    assert_eq!(limited_taken, 3);
    assert_eq!(taken_free, free.len());
}
