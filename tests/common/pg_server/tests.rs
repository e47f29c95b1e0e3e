//! Tests of `PgServer`: private servers that stop, crash and restart.

use std::path::PathBuf;

use super::{PgServer, StopMode};
use sqlx::{Connection, PgConnection};

async fn connect(server: &PgServer) -> PgConnection {
    PgConnection::connect(&server.url("test"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log_tail(20)))
}

async fn ids(server: &PgServer) -> Vec<i32> {
    let mut conn = connect(server).await;
    sqlx::query_scalar("SELECT id FROM kept ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("read the table")
}

async fn insert(server: &PgServer, id: i32) {
    let mut conn = connect(server).await;
    sqlx::query("INSERT INTO kept (id) VALUES ($1)")
        .bind(id)
        .execute(&mut conn)
        .await
        .expect("insert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_fast_and_immediate_stops() {
    let server = PgServer::start().await.expect("start a server");
    let mut conn = connect(&server).await;
    sqlx::raw_sql("CREATE TABLE kept (id INT PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .expect("create the table");
    drop(conn);
    insert(&server, 1).await;

    server.restart(StopMode::Fast).await.expect("restart");
    assert_eq!(ids(&server).await, [1]);

    insert(&server, 2).await;
    let mut open = connect(&server).await;
    server.stop(StopMode::Immediate).await.expect("crash");
    assert!(
        PgConnection::connect(&server.url("test")).await.is_err(),
        "connected to a stopped server"
    );
    assert!(
        sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
        "an open connection outlived the server"
    );
    assert!(server.stop(StopMode::Fast).await.is_err(), "stopped twice");

    server.start_again().await.expect("start after the crash");
    assert_eq!(ids(&server).await, [1, 2], "acknowledged rows recovered");
    assert!(
        server
            .log_tail(200)
            .contains("database system was interrupted")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_deadlock_statistics() {
    let server = PgServer::start().await.expect("start a server");
    let mut conn = connect(&server).await;
    let deadlocks: i64 =
        sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = 'test'")
            .fetch_one(&mut conn)
            .await
            .expect("read pg_stat_database");
    assert_eq!(deadlocks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_side_by_side_with_their_settings_and_clean_up() {
    let (a, b) = tokio::join!(
        PgServer::start_with(&[("max_connections", "42")]),
        PgServer::start()
    );
    let (a, b) = (a.expect("first server"), b.expect("second server"));
    assert_ne!(a.port(), b.port());

    let mut conn = connect(&a).await;
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut conn)
        .await
        .expect("show max_connections");
    assert_eq!(max, "42");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .expect("show fsync");
    assert_eq!(fsync, "on");
    let data: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .expect("show data_directory");
    conn.close().await.expect("close");

    let mut conn = connect(&b).await;
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut conn)
        .await
        .expect("show max_connections");
    assert_eq!(max, "100");

    let url = a.url("test");
    drop(a);
    assert!(!PathBuf::from(&data).exists(), "directory removed");
    assert!(PgConnection::connect(&url).await.is_err(), "server stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_exists_and_bad_settings_fail_readably() {
    let server = PgServer::start().await.expect("start a server");
    PgConnection::connect(&server.url("postgres"))
        .await
        .expect("connect to postgres");

    let err = PgServer::start_with(&[("no_such_setting", "1")])
        .await
        .expect_err("an unknown setting");
    assert!(err.contains("no_such_setting"), "{err}");
}
