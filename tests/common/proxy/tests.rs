//! Tests of `FaultProxy` against the PostgreSQL server of
//! `STENT_TEST_PG_URL` (and private servers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{FaultProxy, ProxyStats};
use crate::pg_server::PgServer;
use crate::{pg_address, pg_url, pg_url_via};

async fn proxy() -> FaultProxy {
    let upstream = pg_address(&pg_url()).await.expect("upstream address");
    FaultProxy::start(upstream).await.expect("start the proxy")
}

fn url(proxy: &FaultProxy) -> String {
    pg_url_via(&pg_url(), proxy.addr())
}

async fn connect(proxy: &FaultProxy) -> PgConnection {
    PgConnection::connect(&url(proxy))
        .await
        .expect("connect through the proxy")
}

async fn direct() -> PgConnection {
    PgConnection::connect(&pg_url())
        .await
        .expect("connect to the server")
}

/// A table with a name no other test uses, dropped by [`Table::drop`].
struct Table(String);

impl Table {
    async fn create() -> Table {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "faultkit_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            stent::ExecutionId::new_random().as_uuid().simple()
        );
        let mut conn = direct().await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {name} (id INT PRIMARY KEY)"
        )))
        .execute(&mut conn)
        .await
        .expect("create the table");
        Table(name)
    }

    fn insert_sql(&self) -> String {
        format!("INSERT INTO {} (id) VALUES ($1)", self.0)
    }

    async fn insert(&self, conn: &mut PgConnection, id: i32) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(self.insert_sql()))
            .bind(id)
            .execute(conn)
            .await
            .map(drop)
    }

    /// The ids in the table, read over a direct connection.
    async fn ids(&self) -> Vec<i32> {
        let mut conn = direct().await;
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {} ORDER BY id",
            self.0
        )))
        .fetch_all(&mut conn)
        .await
        .expect("read the table")
    }

    async fn drop(self) {
        let mut conn = direct().await;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {}", self.0)))
            .execute(&mut conn)
            .await
            .expect("drop the table");
    }
}

async fn add_one(conn: &mut PgConnection, n: i32) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::int4 + 1")
        .bind(n)
        .fetch_one(conn)
        .await
}

async fn wait_fired(proxy: &FaultProxy, n: u64) {
    tokio::time::timeout(Duration::from_secs(10), proxy.wait_fired(n))
        .await
        .expect("the trap fired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_simple_and_prepared_queries() {
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("select 1");
    assert_eq!(one, 1);
    sqlx::raw_sql("SELECT 1; SELECT 2")
        .execute(&mut conn)
        .await
        .expect("a simple query");
    // The second run binds the statement sqlx cached on the first.
    assert_eq!(add_one(&mut conn, 1).await.expect("first run"), 2);
    assert_eq!(add_one(&mut conn, 41).await.expect("cached run"), 42);

    let stats = proxy.stats();
    assert_eq!(
        stats,
        ProxyStats {
            accepted: 1,
            ..ProxyStats::default()
        }
    );
    conn.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_all_closes_open_connections() {
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;
    assert_eq!(add_one(&mut conn, 1).await.expect("before the cut"), 2);

    proxy.cut_all();
    assert!(add_one(&mut conn, 1).await.is_err(), "the cut connection");

    let mut fresh = connect(&proxy).await;
    assert_eq!(add_one(&mut fresh, 2).await.expect("a new connection"), 3);
    assert_eq!(proxy.stats().cuts, 1);
    assert_eq!(proxy.stats().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_for_refuses_new_connections_until_it_passes() {
    let proxy = proxy().await;
    let mut open = connect(&proxy).await;

    proxy.refuse_for(Duration::from_millis(800));
    assert!(PgConnection::connect(&url(&proxy)).await.is_err());
    assert_eq!(add_one(&mut open, 1).await.expect("an open connection"), 2);
    assert!(proxy.stats().refused >= 1);

    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut fresh = connect(&proxy).await;
    assert_eq!(add_one(&mut fresh, 1).await.expect("after the refusal"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_cuts_and_refuses() {
    let proxy = proxy().await;
    let mut open = connect(&proxy).await;
    proxy.outage(Duration::from_millis(500));
    assert!(add_one(&mut open, 1).await.is_err());
    assert!(PgConnection::connect(&url(&proxy)).await.is_err());

    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut fresh = connect(&proxy).await;
    assert_eq!(add_one(&mut fresh, 1).await.expect("after the outage"), 2);

    // Lifting a refusal early.
    proxy.refuse_for(Duration::from_secs(60));
    proxy.refuse_for(Duration::ZERO);
    connect(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_reply_to_runs_the_statement_and_cuts() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    proxy.lose_reply_to(&format!("INSERT INTO {}", table.0), 1, None);
    assert_eq!(proxy.traps_pending(), 1);
    // Other statements pass.
    assert_eq!(add_one(&mut conn, 1).await.expect("unrelated query"), 2);

    assert!(table.insert(&mut conn, 1).await.is_err(), "reply lost");
    wait_fired(&proxy, 1).await;
    assert_eq!(table.ids().await, [1], "the insert landed");
    assert_eq!(proxy.traps_pending(), 0);
    let stats = proxy.stats();
    assert_eq!(
        (stats.replies_lost, stats.cuts, stats.cut_before),
        (1, 1, 0)
    );

    // The trap is spent.
    let mut fresh = connect(&proxy).await;
    table
        .insert(&mut fresh, 2)
        .await
        .expect("insert after the trap");
    assert_eq!(table.ids().await, [1, 2]);
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_reply_to_matches_a_cached_statement() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    // The first run parses the statement; the second only binds it by name.
    table.insert(&mut conn, 1).await.expect("first run");
    proxy.lose_reply_to(&format!("INSERT INTO {}", table.0), 1, None);
    assert!(table.insert(&mut conn, 2).await.is_err(), "reply lost");
    wait_fired(&proxy, 1).await;
    assert_eq!(table.ids().await, [1, 2], "the cached run landed");
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_reply_to_commit_of_a_transaction() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    proxy.lose_reply_to("COMMIT", 1, None);
    let mut tx = conn.begin().await.expect("begin");
    table
        .insert(&mut tx, 7)
        .await
        .expect("insert in the transaction");
    assert!(tx.commit().await.is_err(), "commit reply lost");
    wait_fired(&proxy, 1).await;
    assert_eq!(table.ids().await, [7], "the commit landed");
    assert_eq!(proxy.stats().replies_lost, 1);
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_reply_to_with_refusal_afterwards() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    proxy.lose_reply_to(
        &format!("INSERT INTO {}", table.0),
        1,
        Some(Duration::from_millis(600)),
    );
    assert!(table.insert(&mut conn, 1).await.is_err());
    wait_fired(&proxy, 1).await;
    assert!(
        PgConnection::connect(&url(&proxy)).await.is_err(),
        "refused"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    connect(&proxy).await;
    assert_eq!(table.ids().await, [1]);
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_before_keeps_the_statement_from_the_server() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let pattern = format!("INSERT INTO {}", table.0);

    // A first run on a fresh connection (parsed, then bound).
    proxy.cut_before(&pattern, 1, None);
    let mut conn = connect(&proxy).await;
    assert!(table.insert(&mut conn, 1).await.is_err(), "cut");
    wait_fired(&proxy, 1).await;
    assert_eq!(table.ids().await, Vec::<i32>::new(), "nothing landed");

    // A cached run.
    let mut conn = connect(&proxy).await;
    table.insert(&mut conn, 2).await.expect("first run");
    proxy.cut_before(&pattern, 1, None);
    assert!(table.insert(&mut conn, 3).await.is_err(), "cut");
    wait_fired(&proxy, 2).await;

    // A simple query.
    let mut conn = connect(&proxy).await;
    proxy.cut_before(&pattern, 1, None);
    let simple = format!("INSERT INTO {} (id) VALUES (4)", table.0);
    assert!(
        sqlx::raw_sql(AssertSqlSafe(simple))
            .execute(&mut conn)
            .await
            .is_err()
    );
    wait_fired(&proxy, 3).await;

    assert_eq!(table.ids().await, [2]);
    let stats = proxy.stats();
    assert_eq!(
        (stats.cut_before, stats.cuts, stats.replies_lost),
        (3, 3, 0)
    );
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_delay_keeps_results_right() {
    let table = Table::create().await;
    let proxy = proxy().await;
    proxy.set_delay(Duration::from_millis(20));
    let mut conn = connect(&proxy).await;
    for i in 0..3 {
        assert_eq!(add_one(&mut conn, i).await.expect("delayed query"), i + 1);
        table.insert(&mut conn, i).await.expect("delayed insert");
    }
    proxy.set_delay(Duration::ZERO);
    assert_eq!(add_one(&mut conn, 9).await.expect("undelayed query"), 10);
    assert_eq!(table.ids().await, [0, 1, 2]);
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_reply_to_cuts_only_once_the_server_answered() {
    let table = Table::create().await;
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;

    let slow = format!("INSERT INTO {} (id) SELECT $1 FROM pg_sleep(0.3)", table.0);
    proxy.lose_reply_to(&slow, 1, None);
    let started = tokio::time::Instant::now();
    let result = sqlx::query(AssertSqlSafe(slow))
        .bind(5)
        .execute(&mut conn)
        .await;
    assert!(result.is_err(), "reply lost");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "cut before the server answered"
    );
    assert_eq!(table.ids().await, [5]);
    table.drop().await;
}

/// Runs one command with `psql` (libpq, which asks for TLS first under
/// `sslmode=prefer` or `require`), printing bare values.
async fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .await
        .expect("run psql");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_connections_pass_through_untouched() {
    let proxy = proxy().await;
    proxy.cut_before("pg_stat_ssl", 1, None);
    let url = pg_url_via(&pg_url(), proxy.addr()).replace("sslmode=disable", "sslmode=require");
    let url = if url.contains("sslmode=") {
        url
    } else {
        format!(
            "{url}{}sslmode=require",
            if url.contains('?') { '&' } else { '?' }
        )
    };
    let ssl = psql(
        &url,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
    .expect("query over TLS");
    assert_eq!(ssl, "t");
    assert_eq!(proxy.traps_pending(), 1, "a trap fired on a TLS connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_work_after_a_refused_tls_request() {
    // A private server has TLS off, so it answers libpq's SSLRequest with 'N'.
    let server = PgServer::start().await.expect("start a server");
    let mut direct = PgConnection::connect(&server.url("test"))
        .await
        .expect("connect to the server");
    sqlx::raw_sql("CREATE TABLE t (id INT PRIMARY KEY)")
        .execute(&mut direct)
        .await
        .expect("create the table");
    let upstream: SocketAddr = ([127, 0, 0, 1], server.port()).into();
    let proxy = FaultProxy::start(upstream).await.expect("start the proxy");
    let url = format!("postgres://postgres@{}/test?sslmode=prefer", proxy.addr());

    proxy.lose_reply_to("INSERT INTO t", 1, None);
    assert!(
        psql(&url, "INSERT INTO t VALUES (1)").await.is_err(),
        "reply lost"
    );
    proxy.cut_before("INSERT INTO t", 1, None);
    assert!(psql(&url, "INSERT INTO t VALUES (2)").await.is_err(), "cut");
    wait_fired(&proxy, 2).await;
    psql(&url, "INSERT INTO t VALUES (3)")
        .await
        .expect("insert");

    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(&mut direct)
        .await
        .expect("read the table");
    assert_eq!(ids, [1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_everything() {
    let proxy = proxy().await;
    let mut conn = connect(&proxy).await;
    let url = url(&proxy);
    drop(proxy);
    assert!(
        add_one(&mut conn, 1).await.is_err(),
        "connection outlived the proxy"
    );
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "listener outlived the proxy"
    );
}
