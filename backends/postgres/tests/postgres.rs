//! PostgreSQL-specific behaviour: schemas and migrations, several backends
//! (think: processes on several hosts) on one database, concurrency limits
//! across them, lost connections, cancelled writes, corrupt rows. The trait
//! semantics are covered by the conformance suite (`tests/conformance.rs`).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection};
use stent_conformance::step_turn as step;
use stent_journal::store::{
    ClaimRequest, DatabaseErrorKind, ExecutionFilter, ExecutionStore, JournalStore, NewEvent,
    NewExecution, NewInvocation, Routing, StoreError, TaskDisposition, TaskStore, TurnCommit,
};
use stent_journal::{EventKind, ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};
use stent_postgres::{LeaseClock, PostgresBackend};

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

fn finish(inv: InvocationId, epoch: LeaseEpoch) -> TurnCommit {
    let mut t = step(inv, epoch, 1);
    t.disposition = TaskDisposition::Finish {
        deliver: None,
        execution: None,
    };
    t
}

// ------------------------------------------------------------------ the lease clock

/// Milliseconds since the Unix epoch on this host.
fn wall_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // test support: a real worker's clock
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// By default leases run out by the server's clock: a worker whose clock is
/// an hour ahead takes over no live lease (with the workers' clocks it
/// would), renewals and holds extend a lease from the server's time, and a
/// worker whose clock is an hour behind takes over a lease that did run out.
#[tokio::test]
async fn leases_run_out_by_the_database_clock() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = fx.builder().build().await.expect("connect");
    let hour = 3_600_000;
    let now = wall_ms();
    let exec = new_execution("app::f", now);
    backend.create_execution(exec.clone()).await.unwrap();
    let inv = exec.root.invocation;
    let claim = |worker: &str, now: i64, lease: i64| ClaimRequest {
        lease_until: Timestamp(now + lease),
        ..claim_request(worker, now, 1)
    };

    let held = backend.claim(claim("w1", now, 800)).await.unwrap();
    assert_eq!(held.len(), 1);
    // An hour ahead: the lease is live by the server's clock.
    let ahead = backend.claim(claim("w2", now + hour, 800)).await.unwrap();
    assert!(ahead.is_empty(), "a live lease was taken over: {ahead:?}");
    // Renewed and held from the server's time, whatever the worker's.
    let lost = backend
        .renew_leases(
            &WorkerId::new("w1"),
            &[(inv, held[0].epoch)],
            Timestamp(now - hour),
            Timestamp(now - hour + 800),
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    let ahead = backend.claim(claim("w2", now + hour, 800)).await.unwrap();
    assert!(
        ahead.is_empty(),
        "a renewed lease was taken over: {ahead:?}"
    );
    let mut hold = step(inv, held[0].epoch, 1);
    hold.now = Timestamp(now - hour);
    hold.disposition = TaskDisposition::Hold {
        lease_until: Timestamp(now - hour + 800),
    };
    backend.commit(vec![hold]).await.unwrap();
    assert!(
        backend
            .claim(claim("w2", now + hour, 800))
            .await
            .unwrap()
            .is_empty()
    );
    // Once 800 ms have passed on the server, even a worker an hour behind
    // takes it over.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let behind = backend
        .claim(claim("w3", now - hour + 10_000, 800))
        .await
        .unwrap();
    assert_eq!(behind.len(), 1, "the lapsed lease was not taken over");
    assert_eq!(behind[0].epoch, LeaseEpoch(held[0].epoch.0 + 1));

    // With the workers' clocks, the worker an hour ahead takes it at once.
    let worker_clock = fx
        .builder()
        .lease_clock(LeaseClock::Worker)
        .build()
        .await
        .expect("connect");
    let exec = new_execution("app::f", now);
    worker_clock.create_execution(exec.clone()).await.unwrap();
    let first = worker_clock.claim(claim("w1", now, 800)).await.unwrap();
    assert_eq!(first.len(), 1);
    let ahead = worker_clock
        .claim(claim("w2", now + hour, 800))
        .await
        .unwrap();
    assert_eq!(ahead.len(), 1, "the worker clock decides in this mode");
}

// ------------------------------------------------------------------ schemas and migrations

/// `init_db` again (from the same or another backend) changes nothing and
/// keeps the data; the migrations table lives in the backend's schema.
#[tokio::test]
async fn init_db_is_idempotent_and_data_survives() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let exec = new_execution("app::f", 10);
    fx.backend.create_execution(exec.clone()).await.unwrap();
    fx.backend.init_db().await.unwrap();
    fx.backend.init_db().await.unwrap();
    let other = fx
        .builder()
        .lease_clock(LeaseClock::Worker)
        .build()
        .await
        .unwrap();
    other.init_db().await.unwrap();
    let rec = other.execution(exec.id).await.unwrap().expect("survives");
    assert_eq!(rec.function, "app::f");
    assert_eq!(other.schema(), Some(fx.schema()));

    let mut conn = common::raw_connection().await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{}\"._sqlx_migrations ORDER BY version",
        fx.schema()
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    other.close().await;
}

/// An application role with the rights to use the tables but none to
/// create schemas or tables can run `init_db` on an up-to-date schema (it
/// writes nothing then) and use the backend.
#[tokio::test]
async fn init_db_on_an_up_to_date_schema_needs_no_create_right() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let role = format!("{}_app", fx.schema());
    let mut admin = common::raw_connection().await.unwrap();
    let s = fx.schema();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN; \
         GRANT USAGE ON SCHEMA \"{s}\" TO \"{role}\"; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{s}\" TO \"{role}\"; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA \"{s}\" TO \"{role}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let options: sqlx::postgres::PgConnectOptions = common::url().parse().unwrap();
    let url = sqlx::ConnectOptions::to_url_lossy(&options.username(&role)).to_string();
    let app = PostgresBackend::builder(url)
        .schema(s)
        .build()
        .await
        .unwrap();
    let outcome = app.init_db().await;
    let used = async {
        let e = new_execution("app::f", 1);
        app.create_execution(e.clone()).await?;
        app.execution(e.id).await
    }
    .await;
    app.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    outcome.expect("init_db as the application role");
    assert!(
        used.expect("the application role uses the backend")
            .is_some()
    );
}

/// A database written by an older version (migrations 1 and 2 only, with the
/// version-2 commit function) is upgraded by `init_db`, keeps its data, and
/// the upgraded commit function works on it.
#[tokio::test]
async fn init_db_upgrades_a_version_2_database() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    // Turn the fresh schema back into a version-2 one (but for
    // `executions.code_version`, which the execution created below needs;
    // migration 6 adds it only if it is missing).
    let mut conn = common::raw_connection().await.unwrap();
    let schema = fx.schema();
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\"._sqlx_migrations WHERE version >= 3"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET search_path TO \"{schema}\"; DROP FUNCTION stent_commit; DROP FUNCTION stent_lease_lost; \
         DROP FUNCTION stent_commit_set; \
         ALTER TABLE tasks DROP COLUMN lapsed_epoch, DROP COLUMN last_failed_at, \
         DROP COLUMN last_error; DROP TABLE workers; DROP TABLE task_failures; \
         DROP INDEX executions_by_function, executions_by_queue, executions_by_tags; {}",
        include_str!("../migrations/0002_commit_function.sql")
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let exec = new_execution("app::f", 10);
    fx.backend.create_execution(exec.clone()).await.unwrap();

    fx.backend.init_db().await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{schema}\"._sqlx_migrations ORDER BY version"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let source: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT prosrc FROM pg_proc WHERE proname = 'stent_commit' \
         AND pronamespace = '\"{schema}\"'::regnamespace"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(source.contains("i = ANY(s_turn)"), "the version-3 function");
    assert!(
        source.contains("ORDER BY invocation_id"),
        "the version-4 function locks its rows in order"
    );

    // A spawning turn and a finishing one go through the function.
    let claimed = fx.backend.claim(claim_request("w", 100, 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let root = claimed[0].invocation;
    let child = InvocationId::child_of(root, Seq(1));
    let mut spawn = step(root, claimed[0].epoch, 1);
    spawn.spawn = vec![NewInvocation {
        invocation: child,
        execution: exec.id,
        function: "app::f".into(),
        routing: Routing::default(),
        run_at: Timestamp(100),
        started_event: vec![0xa1, 0x01],
        lease: None,
    }];
    fx.backend.commit(vec![spawn]).await.unwrap();
    let mut done = finish(root, claimed[0].epoch);
    done.events[0].seq = Seq(2);
    fx.backend.commit(vec![done]).await.unwrap();
    let seqs: Vec<u32> = fx
        .backend
        .read_journal(root, Seq(0))
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq.0)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(
        fx.backend.read_journal(child, Seq(0)).await.unwrap().len(),
        1
    );
    let rec = fx.backend.execution(exec.id).await.unwrap();
    assert_eq!(rec.map(|r| r.function), Some("app::f".to_string()));
}

/// Several processes starting at once on an empty schema all get a working
/// database (sqlx serializes the migrations; the schema is created once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_init_db_on_a_fresh_schema() {
    let Some(mut conn) = common::server().await else {
        return;
    };
    let schema = common::TestSchema::new(&mut conn).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let backend = schema.backend().await;
        handles.push(tokio::spawn(async move {
            backend.init_db().await.map(|()| backend)
        }));
    }
    let mut backends = Vec::new();
    for h in handles {
        backends.push(h.await.unwrap().expect("init_db"));
    }
    let exec = new_execution("app::f", 0);
    backends[0].create_execution(exec.clone()).await.unwrap();
    assert!(backends[3].execution(exec.id).await.unwrap().is_some());
    for b in backends {
        b.close().await;
    }
}

/// Each backend sees only its own schema.
#[tokio::test]
async fn schemas_are_isolated() {
    let (Some(a), Some(b)) = (common::fixture().await, common::fixture().await) else {
        return;
    };
    let exec = new_execution("app::f", 0);
    a.backend.create_execution(exec.clone()).await.unwrap();
    assert!(b.backend.execution(exec.id).await.unwrap().is_none());
    assert!(
        b.backend
            .claim(claim_request("w", 10, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.backend
            .claim(claim_request("w", 10, 10))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Before `init_db` the tables are missing: a database error, not a panic.
#[tokio::test]
async fn missing_schema_is_a_database_error() {
    let Some(mut conn) = common::server().await else {
        return;
    };
    let schema = common::TestSchema::new(&mut conn).await;
    let backend = schema.backend().await;
    match backend.execution(ExecutionId::new_random()).await {
        Err(StoreError::Database(e)) => {
            assert!(e.message().starts_with("execution:"), "{e}");
            assert!(e.message().contains("does not exist"), "{e}");
            // undefined_table
            assert_eq!(e.code(), Some("42P01"), "{e}");
            assert!(!e.kind().is_transient(), "{e}");
        }
        other => panic!("expected Database, got {other:?}"),
    }
    assert!(matches!(
        backend.claim(claim_request("w", 0, 1)).await,
        Err(StoreError::Database(_))
    ));
}

#[tokio::test]
async fn schema_names_must_be_plain_identifiers() {
    for bad in ["", "1abc", "a b", "a\"b", "x;drop", &"a".repeat(64)] {
        match PostgresBackend::builder(common::DEFAULT_URL)
            .schema(bad)
            .build_lazy()
        {
            Err(StoreError::Database(e)) => assert!(e.message().contains("schema name"), "{e}"),
            other => panic!("{bad:?}: expected Database, got {other:?}"),
        }
    }
    for good in ["stent", "_x", "Stent_2", &"a".repeat(63)] {
        let backend = PostgresBackend::builder(common::DEFAULT_URL)
            .schema(good)
            .build_lazy()
            .expect(good);
        assert_eq!(backend.schema(), Some(good));
    }
}

// ------------------------------------------------------------------ many backends

/// Three backends (three processes' pools) with two claimers each share 60
/// tasks: each is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_backends_share_the_work() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let mut all = HashSet::new();
    for i in 0..60 {
        let e = new_execution("app::f", i);
        fx.backend.create_execution(e.clone()).await.unwrap();
        all.insert(e.root.invocation);
    }
    let others = [
        fx.builder()
            .lease_clock(LeaseClock::Worker)
            .max_connections(2)
            .build()
            .await
            .unwrap(),
        fx.builder()
            .lease_clock(LeaseClock::Worker)
            .max_connections(3)
            .build()
            .await
            .unwrap(),
    ];
    let backends = [fx.backend.clone(), others[0].clone(), others[1].clone()];
    let mut handles = Vec::new();
    for (n, backend) in backends.iter().chain(backends.iter()).enumerate() {
        let backend = backend.clone();
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
                let turns = got.iter().map(|c| finish(c.invocation, c.epoch)).collect();
                backend.commit(turns).await.expect("commit");
                mine.extend(got.into_iter().map(|c| (c.invocation, c.epoch)));
            }
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for (inv, epoch) in h.await.unwrap() {
            assert_eq!(epoch, LeaseEpoch(1), "{inv} claimed twice");
            assert!(seen.insert(inv), "{inv} claimed twice");
        }
    }
    assert_eq!(seen, all);
    assert_eq!(
        fx.backend.queue_depth(None, Timestamp(100)).await.unwrap(),
        0
    );
    for b in others {
        b.close().await;
    }
}

/// Claimers on four backends hammer a function limited to 3: never more
/// than 3 unexpired leases, and exactly 3 in the end; finishing one lets
/// exactly one more through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_hold_across_backends() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    for i in 0..30 {
        fx.backend
            .create_execution(new_execution("app::f", i))
            .await
            .unwrap();
    }
    let mut backends = vec![fx.backend.clone()];
    for _ in 0..3 {
        backends.push(
            fx.builder()
                .lease_clock(LeaseClock::Worker)
                .max_connections(3)
                .build()
                .await
                .unwrap(),
        );
    }
    let limited = |w: &str| {
        let mut r = claim_request(w, 100, 1);
        r.concurrency_limits = vec![("app::f".into(), 3)];
        r
    };
    let mut handles = Vec::new();
    for (n, backend) in backends.iter().chain(backends.iter()).enumerate() {
        let backend = backend.clone();
        let req = limited(&format!("w{n}"));
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..8 {
                mine.extend(backend.claim(req.clone()).await.expect("claim"));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    let first = &claimed[0];
    fx.backend
        .commit(vec![finish(first.invocation, first.epoch)])
        .await
        .unwrap();
    let mut more = Vec::new();
    for (n, backend) in backends.iter().enumerate() {
        more.extend(backend.claim(limited(&format!("x{n}"))).await.unwrap());
    }
    assert_eq!(more.len(), 1);
    for b in &backends[1..] {
        b.close().await;
    }
}

// ------------------------------------------------------------------ large backlogs

/// With hundreds of due tasks (more than the conformance suite has) claims
/// still come out in claim order and filtered.
#[tokio::test]
async fn claim_order_holds_with_a_large_backlog() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
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

/// `claim_with_journal` reads every claimed task's whole journal in one go
/// (so a worker needs no read per task): the journals always come back, each
/// the task's own, including what an earlier lease holder committed.
#[tokio::test]
async fn claim_with_journal_returns_every_journal() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
    let mut roots = Vec::new();
    for i in 0..30i64 {
        let e = new_execution("app::f", i);
        backend.create_execution(e.clone()).await.unwrap();
        roots.push(e.root.invocation);
    }
    // The first ten hold a lease that runs out, with one more event each.
    let first = backend.claim(claim_request("w1", 100, 10)).await.unwrap();
    assert_eq!(first.len(), 10);
    for c in &first {
        let mut t = step(c.invocation, c.epoch, 1);
        t.disposition = TaskDisposition::Hold {
            lease_until: Timestamp(200),
        };
        backend.commit(vec![t]).await.unwrap();
    }
    let got = backend
        .claim_with_journal(claim_request("w2", 300, 100))
        .await
        .unwrap();
    let ids: Vec<InvocationId> = got.iter().map(|(t, _)| t.invocation).collect();
    assert_eq!(ids, roots);
    for (task, journal) in got {
        let journal = journal.expect("PostgreSQL returns the journals with the claim");
        let stored = backend.read_journal(task.invocation, Seq(0)).await.unwrap();
        assert_eq!(journal, stored);
        let held_before = first.iter().any(|c| c.invocation == task.invocation);
        assert_eq!(journal.len(), if held_before { 2 } else { 1 });
    }
}

/// A limited function's first free-slots tasks and the unlimited ones are
/// merged in claim order, and later batches never pass the limit.
#[tokio::test]
async fn concurrency_limits_hold_with_a_large_backlog() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
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
    let is_limited = |id: &InvocationId| limited.iter().any(|k| k.3 == *id);
    let mut limited_taken = got.iter().filter(|id| is_limited(id)).count();
    let mut taken_free = got.len() - limited_taken;
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

/// A batch of 1,000 spawned children (a large fan-out) is one insert and
/// keeps creation order.
#[tokio::test]
async fn large_spawn_batches_keep_creation_order() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
    let exec = new_execution("app::parent", 0);
    backend.create_execution(exec.clone()).await.unwrap();
    let mut req = claim_request("w", 0, 1);
    req.functions = vec!["app::parent".into()];
    let c = backend.claim(req).await.unwrap().remove(0);
    let root = exec.root.invocation;
    let mut turn = step(root, c.epoch, 1);
    // Highest seq first: creation order differs from id order.
    turn.spawn = (0..1_000u32)
        .rev()
        .map(|i| NewInvocation {
            invocation: InvocationId::child_of(root, Seq(i + 2)),
            execution: exec.id,
            function: "app::f".into(),
            routing: Routing {
                queue: "default".into(),
                priority: 0,
                tags: (0..i % 3).map(|t| format!("t{t}")).collect(),
            },
            run_at: Timestamp(5),
            started_event: i.to_be_bytes().to_vec(),
            lease: None,
        })
        .collect();
    let expected: Vec<_> = turn.spawn.iter().map(|s| s.invocation).collect();
    backend.commit(vec![turn]).await.unwrap();
    let mut got = Vec::new();
    loop {
        let batch = backend.claim(claim_request("w", 10, 100)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().map(|c| c.invocation));
    }
    assert!(got == expected, "children claimed out of creation order");
    let journal = backend
        .read_execution_journal(exec.id, Some(&[EventKind::Started]))
        .await
        .unwrap();
    assert_eq!(journal.len(), 1_001);
    assert_eq!(journal[1].1[0].bytes, 999u32.to_be_bytes().to_vec());
    // Tags went to the right children.
    let mut conn = common::raw_connection().await.unwrap();
    let tags: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT array_to_string(tags, ',') FROM \"{}\".tasks WHERE invocation_id = $1",
        fx.schema()
    )))
    .bind(*InvocationId::child_of(root, Seq(2 + 5)).as_uuid())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tags, vec!["t0,t1".to_string()]);
}

// ------------------------------------------------------------------ failures

/// A server that cannot be reached is a database error, never a panic:
/// when connecting, and on every call of a lazily built backend.
#[tokio::test]
async fn unreachable_server_is_a_database_error() {
    // Nothing listens on port 1.
    let url = "postgres://postgres@127.0.0.1:1/test";
    match PostgresBackend::builder(url)
        .acquire_timeout(Duration::from_millis(300))
        .build()
        .await
    {
        Err(StoreError::Database(e)) => {
            let msg = e.message();
            // Where it tried, and the cause rather than the pool's timeout.
            assert!(msg.contains("127.0.0.1:1/test"), "{msg}");
            assert!(!msg.contains("pool timed out"), "{msg}");
            assert!(msg.to_lowercase().contains("refused"), "{msg}");
            assert_eq!(e.kind(), DatabaseErrorKind::Unavailable, "{e}");
        }
        other => panic!("expected Database, got {other:?}"),
    }
    let lazy = PostgresBackend::builder(url)
        .acquire_timeout(Duration::from_millis(300))
        .build_lazy()
        .unwrap();
    assert!(matches!(
        lazy.execution(ExecutionId::new_random()).await,
        Err(StoreError::Database(_))
    ));
    assert!(matches!(
        lazy.claim(claim_request("w", 0, 1)).await,
        Err(StoreError::Database(_))
    ));
    let inv = ExecutionId::new_random().root_invocation();
    assert!(matches!(
        lazy.commit(vec![step(inv, LeaseEpoch(1), 1)]).await,
        Err(StoreError::Database(_))
    ));
    assert!(matches!(lazy.init_db().await, Err(StoreError::Database(_))));
    assert!(matches!(
        PostgresBackend::connect("not a url").await,
        Err(StoreError::Database(_))
    ));
}

/// Connections killed under a busy worker (server restart, failover,
/// `pg_terminate_backend`) fail the calls that were using them with a
/// database error; the pool reconnects and the work goes on. Every commit
/// either happened whole or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_errors_and_the_pool_recovers() {
    let Some(mut admin) = common::server().await else {
        return;
    };
    let schema = common::TestSchema::new(&mut admin).await;
    let app = schema.name.clone();
    // Plain text: the test reconnects hundreds of times, and a TLS
    // handshake each time (about 80 ms with sqlx 0.9.0, see the PostgreSQL
    // guide) would make it take a minute instead of seconds without testing
    // anything more.
    let backend = PostgresBackend::builder(with_param(&common::url(), "sslmode=disable"))
        .schema(&schema.name)
        .application_name(&app)
        .max_connections(4)
        .build()
        .await
        .unwrap();
    backend.init_db().await.unwrap();
    let exec = new_execution("app::f", 0);
    backend.create_execution(exec.clone()).await.unwrap();
    let c = backend
        .claim(claim_request("w", 0, 1))
        .await
        .unwrap()
        .remove(0);
    let inv = exec.root.invocation;

    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let mut kills = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()) AS k",
                )
                .bind(&app)
                .fetch_one(&mut admin)
                .await
                .unwrap();
                kills += u64::try_from(n).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            kills
        })
    };

    let mut next = 1u32;
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..300 {
        let mut turn = step(inv, c.epoch, next);
        turn.events.push(NewEvent {
            seq: Seq(next + 1),
            kind: EventKind::SideEffect,
            call_key: None,
            bytes: vec![7; 32],
        });
        match backend.commit(vec![turn]).await {
            Ok(()) => ok += 1,
            Err(StoreError::Database(_)) => failed += 1,
            Err(other) => panic!("expected Ok or Database, got {other:?}"),
        }
        // After a failure the commit may or may not have landed (the reply
        // was lost); the journal says which, and is never half-written.
        let rows = loop {
            match backend.read_journal(inv, Seq(next)).await {
                Ok(rows) => break rows,
                Err(StoreError::Database(_)) => continue,
                Err(other) => panic!("expected Ok or Database, got {other:?}"),
            }
        };
        assert!(rows.is_empty() || rows.len() == 2, "{} rows", rows.len());
        next += rows.len() as u32;
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap();
    eprintln!("{ok} commits went through, {failed} failed, {kills} connections killed");
    assert!(kills > 0, "no connection was killed");
    // Back to normal once the killing stops. A termination signalled in the
    // killer's last round may still reach an idle pooled connection after
    // the killer returned (the backend acts on it asynchronously), failing
    // one more call per connection at most; then the pool has reconnected.
    let mut landed = false;
    for _ in 0..=4 {
        match backend.commit(vec![step(inv, c.epoch, next)]).await {
            Ok(()) => {
                landed = true;
                break;
            }
            Err(StoreError::Database(_)) => {
                if !backend
                    .read_journal(inv, Seq(next))
                    .await
                    .unwrap_or_default()
                    .is_empty()
                {
                    landed = true;
                    break;
                }
            }
            Err(other) => panic!("expected Ok or Database, got {other:?}"),
        }
    }
    assert!(landed, "the pool reconnects");
    let all = backend.read_journal(inv, Seq(0)).await.unwrap();
    assert_eq!(all.len() as u32, next + 1);
    assert!(all.iter().enumerate().all(|(i, r)| r.seq == Seq(i as u32)));
    backend.close().await;
}

/// Two commits whose turns name the same tasks in opposite orders, one of
/// them made to wait half-way by another session's lock: they used to
/// deadlock (PostgreSQL aborted one, which ran again). Every commit now
/// locks its rows in invocation id order first (migration 4), so neither
/// is ever aborted: both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_naming_the_same_tasks_in_any_order_never_deadlock() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let app = format!("{}_dl", fx.schema());
    let backend = fx
        .builder()
        .lease_clock(LeaseClock::Worker)
        .application_name(&app)
        .build()
        .await
        .unwrap();
    for i in 0..3 {
        backend
            .create_execution(new_execution("app::f", i))
            .await
            .unwrap();
    }
    let claimed = backend.claim(claim_request("w", 10, 3)).await.unwrap();
    let [x, y, z] = [0, 1, 2].map(|i| (claimed[i].invocation, claimed[i].epoch));
    let turn = |(inv, epoch): (InvocationId, LeaseEpoch), seq| step(inv, epoch, seq);

    // Another session holds z, so B stops after locking y; A locks x and
    // waits for y; when z is let go, B wants x: a deadlock.
    let mut holder = common::raw_connection().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; SELECT 1 FROM \"{}\".tasks WHERE invocation_id = '{}' FOR UPDATE",
        fx.schema(),
        z.0
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    let b = tokio::spawn({
        let backend = backend.clone();
        let turns = vec![turn(y, 2), turn(z, 1), turn(x, 2)];
        async move { backend.commit(turns).await }
    });
    let waiting = |n: i64| {
        let app = app.clone();
        async move {
            let mut conn = common::raw_connection().await.unwrap();
            for _ in 0..2_000 {
                let w: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind(&app)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                if w >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never saw {n} waiting sessions");
        }
    };
    waiting(1).await;
    let a = tokio::spawn({
        let backend = backend.clone();
        let turns = vec![turn(x, 1), turn(y, 1)];
        async move { backend.commit(turns).await }
    });
    // A either waits for B's rows or, if B holds none yet, goes first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    a.await.unwrap().expect("commit A");
    b.await.unwrap().expect("commit B");
    for inv in [x.0, y.0] {
        let seqs: Vec<u32> = backend
            .read_journal(inv, Seq(0))
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq.0)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2]);
    }
    backend.close().await;
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

/// A commit whose caller stops waiting half-way (a timeout, a cancelled
/// task) still commits whole: it runs on a task of its own. Never a part of
/// it, and the pool stays usable (a cancelled sqlx transaction can leave a
/// pooled connection inside a transaction nobody commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_commits_still_commit_whole() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
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
    for micros in (0..4_000).step_by(50) {
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
        if let Some(r) = res {
            r.unwrap();
        } else {
            cancelled += 1;
        }
        // Never partly there; a cancelled one lands a moment later.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = backend.read_journal(inv, Seq(next)).await.unwrap();
            assert!(rows.is_empty() || rows.len() == 20, "{} rows", rows.len());
            if rows.len() == 20 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "commit never landed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        next += 20;
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
    }
    backend
        .commit(vec![step(inv, c.epoch, next)])
        .await
        .unwrap();
    let all = backend.read_journal(inv, Seq(0)).await.unwrap();
    assert_eq!(all.len() as u32, next + 1);
    assert!(all.iter().enumerate().all(|(i, r)| r.seq == Seq(i as u32)));
    eprintln!("{cancelled} of 80 commits cancelled, all landed");
    // Cancelled claims and transactions with a limit leave no connection
    // stuck in a transaction either: everything still works.
    for micros in (0..2_000).step_by(100) {
        let mut req = claim_request("w2", 10, 5);
        req.concurrency_limits = vec![("app::f".into(), 1)];
        let _ = poll_for(backend.claim(req), Duration::from_micros(micros)).await;
    }
    let other = new_execution("app::f", 0);
    backend.create_execution(other.clone()).await.unwrap();
    assert!(backend.execution(other.id).await.unwrap().is_some());
}

/// Rows this build cannot read (edited by hand, written by something else)
/// are reported as corrupt, not panicked on.
#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = &fx.backend;
    let good = new_execution("app::f", 10);
    backend.create_execution(good.clone()).await.unwrap();
    let mut conn = common::raw_connection().await.unwrap();
    let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
    let s = fx.schema();

    run(format!(
        "ALTER TABLE \"{s}\".executions DROP CONSTRAINT executions_status_check; \
         UPDATE \"{s}\".executions SET status = 'exploded'"
    ))
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
    let filter = ExecutionFilter::default().limit(10).offset(0);
    assert!(matches!(
        backend.list_executions(filter).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("executions.status")
    ));

    run(format!("UPDATE \"{s}\".journal SET seq = 5000000000"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.read_journal(good.root.invocation, Seq(0)).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("journal.seq")
    ));

    run(format!("UPDATE \"{s}\".tasks SET retries = -3"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        backend.claim(claim_request("w", 20, 10)).await,
        Err(StoreError::Corrupt(msg)) if msg.contains("tasks.retries")
    ));
    let _ = conn.close().await;
}

// ------------------------------------------------------------------ group commit

/// Concurrent creations, reads and commits go out in fewer statements than
/// calls, and each caller still gets its own answer: a duplicate creation
/// fails alone, a missing execution reads as `None`, a lost lease is
/// reported to its own commit only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_calls_and_keeps_their_answers_apart() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = Arc::new(fx.backend.clone());
    const N: usize = 40;
    let executions: Vec<NewExecution> = (0..N).map(|i| new_execution("app::f", i as i64)).collect();
    // Two of them exist already: their creations must fail, alone.
    for e in &executions[..2] {
        backend.create_execution(e.clone()).await.unwrap();
    }
    let creates: Vec<_> = executions
        .iter()
        .cloned()
        .map(|e| {
            let b = backend.clone();
            tokio::spawn(async move { b.create_execution(e).await })
        })
        .collect();
    for (i, c) in creates.into_iter().enumerate() {
        let outcome = c.await.unwrap();
        if i < 2 {
            assert!(
                matches!(&outcome, Err(StoreError::Conflict(m)) if m.contains("already exists")),
                "creation {i}: {outcome:?}"
            );
        } else {
            outcome.unwrap_or_else(|e| panic!("creation {i}: {e}"));
        }
    }

    // Reads of every execution and of some that do not exist.
    let missing: Vec<ExecutionId> = (0..5).map(|_| ExecutionId::new_random()).collect();
    let ids: Vec<ExecutionId> = executions
        .iter()
        .map(|e| e.id)
        .chain(missing.clone())
        .collect();
    let reads: Vec<_> = ids
        .iter()
        .map(|&id| {
            let b = backend.clone();
            tokio::spawn(async move { (id, b.execution(id).await) })
        })
        .collect();
    for r in reads {
        let (id, outcome) = r.await.unwrap();
        let record = outcome.unwrap();
        if missing.contains(&id) {
            assert!(record.is_none(), "{id} does not exist");
        } else {
            assert_eq!(record.map(|r| r.id), Some(id));
        }
    }

    // Every task claimed by w1; a third taken over by w2 once expired.
    let mut claimed = Vec::new();
    while claimed.len() < N {
        let got = backend.claim(claim_request("w1", 100, N)).await.unwrap();
        assert!(!got.is_empty());
        claimed.extend(got);
    }
    let taken: HashSet<InvocationId> = claimed.iter().step_by(3).map(|t| t.invocation).collect();
    let kept: Vec<_> = claimed
        .iter()
        .filter(|t| !taken.contains(&t.invocation))
        .map(|t| (t.invocation, t.epoch))
        .collect();
    backend
        .renew_leases(
            &WorkerId::new("w1"),
            &kept,
            Timestamp(0),
            Timestamp(10_000_000),
        )
        .await
        .unwrap();
    let over = backend
        .claim(claim_request("w2", 100_000, N))
        .await
        .unwrap();
    assert_eq!(over.len(), taken.len());

    let commits: Vec<_> = claimed
        .iter()
        .map(|t| {
            let b = backend.clone();
            let (inv, epoch) = (t.invocation, t.epoch);
            tokio::spawn(async move { (inv, b.commit(vec![step(inv, epoch, 1)]).await) })
        })
        .collect();
    for c in commits {
        let (inv, outcome) = c.await.unwrap();
        if taken.contains(&inv) {
            assert!(
                matches!(outcome, Err(StoreError::LeaseLost { invocation, .. }) if invocation == inv),
                "{inv}: {outcome:?}"
            );
            assert_eq!(backend.read_journal(inv, Seq(0)).await.unwrap().len(), 1);
        } else {
            outcome.unwrap_or_else(|e| panic!("{inv}: {e}"));
            assert_eq!(backend.read_journal(inv, Seq(0)).await.unwrap().len(), 2);
        }
    }

    let stats = backend.group_commit_stats();
    for (kind, counts) in [
        ("creates", stats.creates),
        ("reads", stats.reads),
        ("commits", stats.commits),
    ] {
        assert!(counts.calls >= N as u64, "{kind}: {counts:?}");
        assert!(
            counts.batches < counts.calls,
            "{kind} were not batched: {counts:?}"
        );
    }
}

/// With group commit switched off every call is its own statement, and the
/// backend works the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_can_be_switched_off() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = Arc::new(
        fx.builder()
            .lease_clock(LeaseClock::Worker)
            .group_commit(false)
            .build()
            .await
            .unwrap(),
    );
    let creates: Vec<_> = (0..10)
        .map(|i| {
            let b = backend.clone();
            let e = new_execution("app::f", i);
            tokio::spawn(async move {
                b.create_execution(e.clone()).await.unwrap();
                b.execution(e.id).await.unwrap().map(|r| r.id) == Some(e.id)
            })
        })
        .collect();
    for c in creates {
        assert!(c.await.unwrap());
    }
    let claimed = backend.claim(claim_request("w", 10, 10)).await.unwrap();
    assert_eq!(claimed.len(), 10);
    for t in &claimed {
        backend
            .commit(vec![finish(t.invocation, t.epoch)])
            .await
            .unwrap();
    }
    assert_eq!(
        backend.group_commit_stats(),
        stent_postgres::GroupCommitStats::default()
    );
}

// ------------------------------------------------------------------ TLS

/// `url` with `param` (`name=value`) added, or replacing the one of that name.
fn with_param(url: &str, param: &str) -> String {
    let name = param.split('=').next().unwrap_or(param);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .collect();
    params.push(param);
    format!("{base}?{}", params.join("&"))
}

/// `sslmode=require` encrypts the connections (the test server runs with
/// `ssl = on`, as Debian's default cluster does); `verify-full` refuses a
/// certificate no trusted root signed, saying so.
#[tokio::test]
async fn tls_connections_are_encrypted_and_certificates_checked() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let ssl_on: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(fx.backend.pool())
        .await
        .unwrap();
    if ssl_on != "on" {
        let why = format!(
            "the test server at {} runs with ssl = {ssl_on}",
            common::url()
        );
        stent_test_services::skip("PostgreSQL with TLS", &why);
        return;
    }
    let backend = PostgresBackend::builder(with_param(&common::url(), "sslmode=require"))
        .schema(fx.schema())
        .build()
        .await
        .expect("a TLS connection");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(backend.pool())
            .await
            .unwrap();
    assert!(encrypted, "sslmode=require gave an unencrypted connection");
    let e = new_execution("app::f", 1);
    backend.create_execution(e.clone()).await.unwrap();
    assert_eq!(
        backend.execution(e.id).await.unwrap().map(|r| r.id),
        Some(e.id)
    );

    match PostgresBackend::builder(with_param(&common::url(), "sslmode=verify-full"))
        .schema(fx.schema())
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .await
    {
        Err(StoreError::Database(message)) => assert!(
            message.message().to_lowercase().contains("certificate"),
            "the error should name the certificate: {message}"
        ),
        Ok(_) => panic!("verify-full accepted the server's self-signed certificate"),
        Err(other) => panic!("expected a database error, got {other:?}"),
    }
}

// ------------------------------------------------------------------ kept connections

/// An execution of `app::f` created on `backend`, its root claimed by `w`.
async fn running_root(backend: &PostgresBackend) -> (NewExecution, InvocationId, LeaseEpoch) {
    let exec = new_execution("app::f", 10);
    backend.create_execution(exec.clone()).await.unwrap();
    let claimed = backend.claim(claim_request("w", 100, 1)).await.unwrap();
    (exec, claimed[0].invocation, claimed[0].epoch)
}

/// The seqs of `invocation`'s journal.
async fn seqs(backend: &PostgresBackend, invocation: InvocationId) -> Vec<u32> {
    let rows = backend.read_journal(invocation, Seq(0)).await.unwrap();
    rows.iter().map(|r| r.seq.0).collect()
}

/// How many server connections carry `application_name`, once the server
/// has ended those it was told to (it ends them asynchronously).
async fn connections_named(name: &str) -> i64 {
    let mut conn = common::raw_connection().await.unwrap();
    let count =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let _ = conn.close().await;
    count
}

/// Ends every server connection carrying `application_name`, as a server
/// restart or an idle timeout would, and waits until they are gone.
async fn end_connections_named(name: &str) {
    let mut conn = common::raw_connection().await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    for _ in 0..100 {
        if connections_named(name).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not end the connections of {name}");
}

/// Commits keep their connection out of the pool for the next commit. One
/// the server ended is replaced: at once if it sat idle long enough to be
/// checked, else after the commit that found it dead (an error, nothing
/// written), and nothing is lost. Closing the pool itself, not through the
/// backend, still ends: the kept connection goes back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_keep_a_connection_replaced_when_dead_and_given_back_on_close() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let name = format!(
        "stent_keep_{}",
        ExecutionId::new_random().as_uuid().simple()
    );
    let backend = fx
        .builder()
        .application_name(&name)
        .check_idle_for(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let (_, root, epoch) = running_root(&backend).await;
    backend.commit(vec![step(root, epoch, 1)]).await.unwrap();
    assert!(connections_named(&name).await >= 1);

    // Ended right after use: each dead connection, kept or pooled, fails
    // at most one commit.
    let open = connections_named(&name).await;
    end_connections_named(&name).await;
    let mut failed = 0;
    while let Err(e) = backend.commit(vec![step(root, epoch, 2)]).await {
        assert!(matches!(e, StoreError::Database(_)), "{e:?}");
        failed += 1;
        assert!(
            failed <= open,
            "{open} dead connections failed {failed} commits"
        );
    }

    // Ended, then idle past the check: replaced before use.
    end_connections_named(&name).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.commit(vec![step(root, epoch, 3)]).await.unwrap();
    assert_eq!(seqs(&backend, root).await, vec![0, 1, 2, 3]);

    tokio::time::timeout(Duration::from_secs(10), backend.pool().close())
        .await
        .expect("the pool closes with a kept connection");
    assert_eq!(connections_named(&name).await, 0);
}

/// A pool of one connection: commits keep none for themselves (they would
/// hold the only one), so claims and reads between commits never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_connection_keeps_none_for_commits() {
    let Some(fx) = common::fixture().await else {
        return;
    };
    let backend = fx
        .builder()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let (exec, root, epoch) = running_root(&backend).await;
    for seq in 1..=3 {
        backend.commit(vec![step(root, epoch, seq)]).await.unwrap();
        assert!(
            backend
                .claim(claim_request("w", 100, 1))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(backend.execution(exec.id).await.unwrap().is_some());
    }
    assert_eq!(backend.read_journal(root, Seq(0)).await.unwrap().len(), 4);
}
