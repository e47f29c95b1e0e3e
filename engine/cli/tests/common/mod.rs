//! Test support: databases the tests create (a SQLite file in a temporary
//! directory, or a PostgreSQL schema of its own), workflows to fill them, and
//! running the real `stent` binary against them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use stent::backends::{PostgresBackend, SqliteBackend};
use stent::{ExecutionId, InvocationId, RetryPolicy, Stent, WorkerLifecycle};

// ------------------------------------------------------------------ scenarios

/// `on_both!(scenario)`: the async fn `scenario(db: Db)` as two tests, on
/// a fresh SQLite file and on a fresh PostgreSQL schema (skipped without a
/// server unless `STENT_REQUIRE_SERVICES=1`).
#[allow(unused_macros)] // not every test binary has scenarios
macro_rules! on_both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Db::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$scenario(db).await;
                }
            }
        }
    };
}

// ------------------------------------------------------------------ workflows

#[stent::durable]
pub async fn charge(order: u64, cents: u64) -> Result<String, String> {
    Ok(format!("receipt-{order}-{cents}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub order: u64,
    pub receipt: String,
    pub total: f64,
}

#[stent::durable]
pub async fn checkout(order: u64) -> Result<Receipt, String> {
    let ctx = stent::Stent::context().map_err(|e| e.to_string())?;
    ctx.counters("items").add(3).map_err(|e| e.to_string())?;
    ctx.state("phase")
        .set("charged")
        .map_err(|e| e.to_string())?;
    let receipt = charge(order, 4200).await?;
    Ok(Receipt {
        order,
        receipt,
        total: 42.5,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderError {
    OutOfStock { sku: String },
}

#[stent::durable]
pub async fn rejects(order: u64) -> Result<u64, OrderError> {
    Err(OrderError::OutOfStock {
        sku: format!("A-{order}"),
    })
}

#[stent::durable]
pub async fn awaits_approval(doc: String) -> Result<String, String> {
    let who: String = Stent::wait_for_signal("approval")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{doc} approved by {who}"))
}

/// Behind a patch: a new execution records its marker, then waits for
/// `approval`.
#[stent::durable]
pub async fn patched_approval(doc: String) -> Result<String, String> {
    let lane = if Stent::patched("fast-lane").map_err(|e| e.to_string())? {
        "fast"
    } else {
        "slow"
    };
    let who: String = Stent::wait_for_signal("approval")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{doc} approved by {who} in the {lane} lane"))
}

pub fn once() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(1)
        .initial_delay(Duration::from_millis(10))
}

#[stent::durable(retry_policy = once())]
pub async fn hopeless(n: u64) -> Result<u64, String> {
    panic!("hopeless {n}")
}

#[stent::durable]
pub async fn calls_hopeless(n: u64) -> Result<u64, String> {
    hopeless(n).await
}

/// Fails with markup in its error (and its argument): pages must show it
/// as text.
#[stent::durable]
pub async fn hostile(name: String) -> Result<String, String> {
    Err(format!("<script>alert('err')</script>{name}"))
}

// ------------------------------------------------------------------ databases

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database a test created; removed when dropped.
pub enum Db {
    /// A SQLite file in a directory of its own.
    Sqlite { dir: PathBuf, path: PathBuf },
    /// A schema of its own on the test PostgreSQL server.
    Postgres {
        url: String,
        schema: String,
        backend: PostgresBackend,
    },
}

impl Db {
    /// A fresh SQLite database.
    pub async fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!(
            "stent-cli-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("stent.db");
        let backend = SqliteBackend::open(&path).await.expect("open sqlite");
        backend.init_db().await.expect("init_db");
        drop(backend);
        Db::Sqlite { dir, path }
    }

    /// A fresh PostgreSQL schema, or `None` (after saying so) when there is
    /// no server and `STENT_REQUIRE_SERVICES` is not `1`.
    pub async fn postgres() -> Option<Db> {
        let url = stent_test_services::pg_url();
        if !stent_test_services::available("PostgreSQL", &url) {
            return None;
        }
        let schema = format!(
            "stent_cli_test_{}",
            ExecutionId::new_random().as_uuid().simple()
        );
        let backend = PostgresBackend::builder(&url)
            .schema(&schema)
            .build()
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} answers but: {e}"));
        backend.init_db().await.expect("init_db");
        Some(Db::Postgres {
            url,
            schema,
            backend,
        })
    }

    /// The global flags that point the binary at this database.
    pub fn args(&self) -> Vec<String> {
        match self {
            Db::Sqlite { path, .. } => vec!["--db".into(), path.display().to_string()],
            Db::Postgres { url, schema, .. } => vec![
                "--db".into(),
                url.clone(),
                "--schema".into(),
                schema.clone(),
            ],
        }
    }

    /// An executor on this database with `registry`, polling often.
    pub async fn executor_with(&self, registry: stent::FunctionRegistry) -> Stent {
        let builder = match self {
            Db::Sqlite { path, .. } => {
                Stent::builder(SqliteBackend::open(path).await.expect("open"))
            }
            Db::Postgres { backend, .. } => Stent::builder(backend.clone()),
        };
        builder
            .function_registry(registry)
            .poll_min_interval(Duration::from_millis(10))
            .poll_max_interval(Duration::from_millis(100))
            .build()
    }

    /// An executor on this database that polls often (tests wait on it).
    pub async fn executor(&self) -> Stent {
        self.executor_of_version(None).await
    }

    /// As [`Db::executor`], of the code version `version`.
    pub async fn executor_of_version(&self, version: Option<&str>) -> Stent {
        let quick = |b: stent::StentBuilder| {
            let b = b
                .poll_min_interval(Duration::from_millis(10))
                .poll_max_interval(Duration::from_millis(100));
            match version {
                Some(v) => b.code_version(v),
                None => b,
            }
            .build()
        };
        match self {
            Db::Sqlite { path, .. } => quick(Stent::builder(
                SqliteBackend::open(path).await.expect("open"),
            )),
            Db::Postgres { backend, .. } => quick(Stent::builder(backend.clone())),
        }
    }

    /// Runs the `stent` binary with this database and `args`.
    pub fn stent(&self, args: &[&str]) -> Output {
        let mut all = self.args();
        all.extend(args.iter().map(|a| a.to_string()));
        run_stent(&all)
    }

    /// Runs `stent --json ARGS` and parses its output.
    pub fn json(&self, args: &[&str]) -> Json {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.stent(&all);
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stent {args:?} printed no JSON ({e}):\n{}", out.stdout))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        match self {
            Db::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Db::Postgres {
                schema, backend, ..
            } => {
                let pool = backend.pool().clone();
                let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                // Best effort, on a thread of its own: Drop cannot await.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop_schema))
                            .execute(&pool)
                            .await;
                    });
                })
                .join();
            }
        }
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0.
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }

    /// Asserts `code`.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
}

/// Runs the `stent` binary with `args` (standard input closed, no
/// `STENT_DB` from the environment).
pub fn run_stent(args: &[String]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_stent"))
        .args(args)
        .env_remove("STENT_DB")
        .env_remove("STENT_PG_SCHEMA")
        .stdin(Stdio::null())
        .output()
        .expect("run the stent binary");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ------------------------------------------------------------------ scenario

/// A worker running in the test process.
pub struct Worker {
    lifecycle: WorkerLifecycle,
    handle: tokio::task::JoinHandle<stent::Result<()>>,
}

impl Worker {
    pub async fn start(executor: &Stent) -> Worker {
        let lifecycle = executor.create_worker_lifecycle(None);
        let handle = tokio::spawn(
            executor
                .worker()
                .lifecycle(lifecycle.clone())
                .poll_min_interval(Duration::from_millis(10))
                .poll_max_interval(Duration::from_millis(100))
                .serve(),
        );
        lifecycle.wait_until_ready().await;
        Worker { lifecycle, handle }
    }

    pub async fn stop(self) {
        self.lifecycle.request_drain();
        self.handle.await.expect("worker task").expect("worker");
    }
}

/// The executions a filled database holds.
pub struct Filled {
    /// `checkout(7)`: completed, with a nested call, a counter and state.
    pub done: ExecutionId,
    /// `rejects(8)`: failed with a typed error.
    pub failed: ExecutionId,
    /// `awaits_approval("doc-1")`: running, waiting for signal "approval".
    pub waiting: ExecutionId,
    /// Two `calls_hopeless(n)`: each has a dead-lettered child.
    pub dead: [(ExecutionId, InvocationId); 2],
}

/// Dispatches the executions of [`Filled`] and runs a worker until each is
/// where it should be.
pub async fn fill(executor: &Stent) -> Filled {
    let worker = Worker::start(executor).await;
    let done = executor
        .dispatch(checkout(7))
        .tags(["shop", "eu"])
        .priority(5)
        .await
        .unwrap();
    let failed = executor.dispatch(rejects(8)).await.unwrap();
    let waiting = executor
        .dispatch(awaits_approval("doc-1".into()))
        .await
        .unwrap();
    let d1 = executor.dispatch(calls_hopeless(1)).await.unwrap();
    let d2 = executor.dispatch(calls_hopeless(2)).await.unwrap();
    let limit = Some(Duration::from_secs(60));
    executor
        .wait_for::<Receipt, String>(done, limit)
        .await
        .unwrap()
        .unwrap();
    executor
        .wait_for::<u64, OrderError>(failed, limit)
        .await
        .unwrap()
        .unwrap_err();
    let letters = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let letters = executor.list_dead_letters(10).await.unwrap();
            if letters.len() == 2 {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("two dead letters");
    let task_of = |e: ExecutionId| {
        letters
            .iter()
            .find(|l| l.execution == e)
            .map(|l| l.task)
            .expect("dead letter of execution")
    };
    let dead = [(d1, task_of(d1)), (d2, task_of(d2))];
    // The waiting execution has journaled its wait.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let s = executor.state_of(waiting).await.unwrap();
            if s.state == stent::ExecutionStatus::Running {
                let rows = executor
                    .backend()
                    .read_journal(waiting.root_invocation(), stent::journal::Seq(0))
                    .await
                    .unwrap();
                if rows.iter().any(|r| r.kind == "signal_awaited") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the approval wait is journaled");
    worker.stop().await;
    Filled {
        done,
        failed,
        waiting,
        dead,
    }
}
