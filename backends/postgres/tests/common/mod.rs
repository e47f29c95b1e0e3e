//! Test support: a fresh PostgreSQL schema per test, dropped at the end.
//!
//! The server comes from `STENT_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it cannot be reached, a
//! test prints that it was skipped and passes, unless
//! `STENT_REQUIRE_SERVICES=1`, when it fails saying why.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use stent_journal::ExecutionId;
use stent_journal::store::Backend;
use stent_postgres::{LeaseClock, PostgresBackend, PostgresBuilder};

/// The default test server.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Test schemas are named `stent_test_<unix seconds>_<random>`.
const PREFIX: &str = "stent_test_";

/// Schemas left behind by killed test runs are dropped once this old.
const STALE_AFTER_SECS: u64 = 3_600;

/// The test server's URL.
pub fn url() -> String {
    std::env::var("STENT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn unix_secs() -> u64 {
    // Test support only: names test schemas so stale ones can be found.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A raw connection to the test server, or why there is none.
pub async fn raw_connection() -> Result<PgConnection, String> {
    let url = url();
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("STENT_TEST_PG_URL={url:?} is not a PostgreSQL URL: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to PostgreSQL at {url}: {e}")),
        Err(_) => Err(format!("connecting to PostgreSQL at {url} timed out")),
    }
}

/// A raw connection, or `None` when nothing answers at the server's
/// address (the skip is recorded; a failure instead when services are
/// required). Once the server answers, failing to connect is a failure.
pub async fn server() -> Option<PgConnection> {
    if !stent_test_services::available("PostgreSQL", &url()) {
        return None;
    }
    Some(raw_connection().await.unwrap_or_else(|why| panic!("{why}")))
}

/// A schema of its own for one test: created by `init_db`, dropped (with
/// everything in it) when dropped.
pub struct TestSchema {
    /// Its name.
    pub name: String,
}

impl TestSchema {
    /// A new, unique name (nothing is created yet). Sweeps stale test
    /// schemas the first time it is called in a process.
    pub async fn new(conn: &mut PgConnection) -> TestSchema {
        static SWEPT: AtomicBool = AtomicBool::new(false);
        if !SWEPT.swap(true, Ordering::SeqCst) {
            sweep_stale(conn).await;
        }
        let random = ExecutionId::new_random().as_uuid().simple().to_string();
        TestSchema {
            name: format!("{PREFIX}{}_{}", unix_secs(), &random[..16]),
        }
    }

    /// A backend on this schema (its own pool). Its leases run out by the
    /// times the tests pass in ([`LeaseClock::Worker`]), as the suite's
    /// scripted claims and renewals expect.
    pub async fn backend(&self) -> PostgresBackend {
        self.builder()
            .lease_clock(LeaseClock::Worker)
            .build()
            .await
            .expect("connect to the test server")
    }

    /// A builder for a backend on this schema, with the defaults.
    pub fn builder(&self) -> PostgresBuilder {
        PostgresBackend::builder(url())
            .schema(&self.name)
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs in async code (and maybe while unwinding from a failed
        // assertion): do the async work on a thread of its own.
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = raw_connection().await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// Drops test schemas older than [`STALE_AFTER_SECS`] (left by killed runs).
async fn sweep_stale(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = unix_secs();
    for name in names {
        let created = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER_SECS < now) {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// A backend on a fresh, initialised schema, with the schema that is dropped
/// after it: the conformance fixture.
pub struct Fixture {
    /// The backend.
    pub backend: PostgresBackend,
    // Declared after the backend so the pool goes first.
    schema: TestSchema,
}

impl Fixture {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema.name
    }

    /// A builder for another backend on the same schema, with the defaults.
    pub fn builder(&self) -> PostgresBuilder {
        self.schema.builder()
    }
}

impl stent_conformance::Fixture for Fixture {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.backend.clone())
    }
}

/// A backend on a fresh, initialised schema, or `None` (skipped) if the
/// server cannot be reached.
pub async fn fixture() -> Option<Fixture> {
    let mut conn = server().await?;
    let schema = TestSchema::new(&mut conn).await;
    let _ = conn.close().await;
    let backend = schema.backend().await;
    backend.init_db().await.expect("init_db");
    Some(Fixture { backend, schema })
}
