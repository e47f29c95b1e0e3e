//! The SQLite storage backend of stent: one file, WAL, embedded migrations.
//!
//! [`SqliteBackend`] implements every storage trait of
//! [`stent_journal::store`] on a single SQLite database file through sqlx
//! (runtime queries with binds; no compile-time macros, no build-time
//! database). It is the embedded default: one process, or a few processes on
//! one machine sharing the file.
//!
//! ```no_run
//! use stent_sqlite::{SqliteBackend, Synchronous};
//!
//! # async fn demo() -> Result<(), stent_journal::store::StoreError> {
//! // Durable defaults: WAL + synchronous=FULL.
//! let backend = SqliteBackend::open("stent.db").await?;
//! backend.init_db().await?; // creates or upgrades the schema; harmless to repeat
//!
//! // Or tuned: ~3x more commits per second, may lose the last commits on power loss.
//! let fast = SqliteBackend::builder("fast.db")
//!     .synchronous(Synchronous::Normal)
//!     .max_connections(8)
//!     .busy_timeout(std::time::Duration::from_secs(10))
//!     .build()
//!     .await?;
//! fast.init_db().await?;
//! # Ok(()) }
//! ```
//!
//! # Connections and transactions
//!
//! Every write (create, claim, renew, commit, signal, taking an idempotency
//! key, ending an execution, replaying or discarding a dead letter, cleanup)
//! goes to one writer task
//! that owns the writer connection: SQLite serializes writers anyway. The
//! task does *group commit*: it takes every write request already queued (up
//! to 128; it never waits for more), applies them in arrival order inside one
//! `BEGIN IMMEDIATE` transaction and commits once. So under concurrency one
//! fsync makes many writes durable, while each write keeps its own
//! all-or-nothing result: a write that fails (a lost lease, a conflict) is
//! undone and answered with its error, and the others commit. Writes in a
//! group see the ones before them. The group's commits and creates are
//! batched: the fences and dispositions of many turns are one `UPDATE`, and
//! their journal rows, new tasks, new executions and execution outcomes are
//! written a few hundred rows per statement (so a typical commit is a handful
//! of statements, however many turns it holds). (A group in which a write
//! fails is rolled back and applied again write by write, statement by
//! statement, with a savepoint around each write, the failed one rolled back
//! to its savepoint.) A write's call returns after its
//! transaction committed; if the transaction fails, every write in it gets
//! the error. Taking the write lock up front (`IMMEDIATE`) means the busy
//! timeout applies (a deferred `BEGIN` that later upgrades fails at once with
//! "database is locked" when another process writes). A write whose caller
//! gives up (its future is dropped) before its group starts is skipped; once
//! started, it commits or not with its group. Reads run on a small pool of
//! reader connections, which WAL lets proceed while a write commits.
//!
//! The writer task runs on the tokio runtime that opened the backend, and
//! ends when the last clone of the backend is dropped.
//!
//! # Durability
//!
//! The default is `synchronous=FULL`: a commit that returned is on disk, even
//! across a power loss. [`Synchronous::Normal`] is about three times faster
//! (measured here: ~12,000 vs ~3,800 single-row commits/s); in WAL mode it
//! stays safe across a process crash but may lose the last commits on a power
//! loss or OS crash. [`Synchronous::Off`] is for throwaway data only.
//!
//! # Schema
//!
//! Created by [`SqliteBackend::init_db`] from the embedded migrations in
//! `migrations/` (tracked in sqlx's `_sqlx_migrations` table). Ids are
//! hyphenated lowercase UUID text and times are Unix milliseconds, so the file
//! reads well in the `sqlite3` shell. Payloads are opaque CBOR blobs the
//! backend never decodes.
//!
//! | table | columns | meaning |
//! |---|---|---|
//! | `executions` | `id`, `function`, `status`, `queue`, `priority`, `tags`, `created_at`, `started_at`, `completed_at`, `deadline`, `terminal_event`, `pause_report` | one row per dispatched execution; `status` is `pending`, `running`, `completed`, `failed`, `timed_out`, `cancelled` or `paused`; `tags` is a JSON array of strings; `queue`, `priority` and `tags` are the root task's |
//! | `tasks` | `invocation_id`, `execution_id`, `function`, `queue`, `priority`, `tags`, `state`, `run_at`, `lease_owner`, `lease_until`, `epoch`, `attempts`, `lapsed_epoch`, `retries`, `last_failed_at`, `last_error`, `wake`, `created` | one row per invocation: the work queue. `state` is `ready` (claimable once `run_at` passes), `leased` (held by `lease_owner` until `lease_until`), `waiting` (parked until woken), `done`, `paused`, `dead` (dead-lettered) or `cancelled` (its execution was ended). `epoch` is bumped by every claim and fences every write; `attempts` counts the claims since the lease holder last committed, less the takeovers of lapsed leases whose holders reported them alive; `lapsed_epoch` is the epoch of the lapsed lease the last claim took over; `retries` the retries of the task; `last_failed_at` and `last_error` when and why its last retried attempt failed; `wake` records a delivery or signal that arrived while the task was leased; `created` is the creation order (ties of priority and `run_at` are claimed oldest first) |
//! | `journal` | `invocation_id`, `seq`, `kind`, `call_key`, `payload`, `recorded_at` | the append-only journal, primary key `(invocation_id, seq)` |
//! | `inbox` | `id`, `invocation_id`, `event` | results of finished children not yet appended to their parent's journal |
//! | `signals` | `id`, `execution_id`, `name`, `payload`, `consumed_by`, `created_at` | signals sent to executions; `consumed_by` is the invocation that received it |
//! | `dead_letters` | `task_id`, `execution_id`, `function`, `queue`, `reason`, `retries`, `failed_at` | tasks (state `dead`) that ran out of attempts, until replayed or discarded |
//! | `task_failures` | `invocation_id`, `attempt`, `failed_at`, `error` | each failed attempt of a task that was retried (the last 50 per task), numbered from 1 |
//! | `cache` | `call_key`, `value`, `created_at` | results shared across executions by call key; the first writer wins |
//! | `idempotency` | `key`, `owner`, `state`, `value` | idempotency keys: `state` is `running` (held by invocation `owner`) or `done` (with its `value`) |
//!
//! Indexes (the partial ones leave out finished tasks, which are most of the
//! table over time): `tasks(priority DESC, run_at, created) WHERE state =
//! 'ready'` and `tasks(run_at) WHERE state = 'ready'` for claims — a claim
//! walks the first in claim order when at least 256 tasks are due, and
//! otherwise takes the due tasks from the second and sorts them, so neither a
//! large backlog nor many tasks sleeping until a future `run_at` makes a claim
//! slow; `tasks(function, priority DESC, run_at, created) WHERE state =
//! 'ready'` for the first few tasks of a function with a concurrency limit;
//! `tasks(lease_until) WHERE state = 'leased'` for expired leases and live
//! leases; `tasks(execution_id, created)` for signal wake-ups, ending an
//! execution and reading its whole journal; `inbox(invocation_id, id)`;
//! `signals(execution_id, consumed_by, name, id)`; `executions` by
//! `created_at` and by `(status, created_at)` for listing, and by
//! `completed_at` for cleanup; `dead_letters` by `(failed_at DESC, task_id)`
//! and by `execution_id`.
//!
//! # Concurrency limits
//!
//! A claim whose request limits some of its functions counts the unexpired
//! leases of those functions, takes the first free-slots candidates of each
//! limited function and the first `limit` of the unlimited ones, merges them
//! in claim order and leases the first `limit` — all inside the writer's
//! transaction, so concurrent claims (grouped or from other processes) never
//! exceed a limit. A claim without limits is one statement.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqlSafeStr, Sqlite};
use stent_journal::store::{StoreError, StoreResult};
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};

use crate::writer::{Counters, Pending, Request, WriterConn};

mod batch;
mod error;
mod script;
mod sql;
mod store;
mod writer;

/// Prepares the writer connection: the temporary objects its batched
/// commits use (see `sql::CREATE_FENCE_GUARD`).
async fn writer_setup(mut conn: SqliteConnection) -> Result<SqliteConnection, StoreError> {
    sqlx::raw_sql(sql::CREATE_FENCE_GUARD)
        .execute(&mut conn)
        .await
        .map_err(|e| error::database_error("preparing the writer connection", e))?;
    Ok(conn)
}

/// Prepared statements the writer connection keeps.
const WRITER_STATEMENT_CACHE: usize = 256;

/// The embedded schema migrations, in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "retries dead letters cache idempotency",
        include_str!("../migrations/0002_retries_dead_letters_cache_idempotency.sql"),
    ),
    (
        3,
        "lapsed epoch",
        include_str!("../migrations/0003_lapsed_epoch.sql"),
    ),
    (
        4,
        "task failures and execution filters",
        include_str!("../migrations/0004_failures_and_filters.sql"),
    ),
    (
        5,
        "code version",
        include_str!("../migrations/0005_code_version.sql"),
    ),
    (
        6,
        "signal keys",
        include_str!("../migrations/0006_signal_keys.sql"),
    ),
];

/// The newest schema version this build knows (its last migration).
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The newest migration the database records as applied; `None` if it has
/// no migrations table (no stent tables at all).
async fn applied_version(conn: &mut SqliteConnection) -> Result<Option<i64>, StoreError> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| crate::error::database_error("reading the schema version", e))?;
    if table.is_none() {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| crate::error::database_error("reading the schema version", e))
}

/// How hard SQLite works to make each commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is on disk before it returns, even across a power loss.
    /// The default.
    #[default]
    Full,
    /// About three times faster in WAL mode. Safe across a process crash; a
    /// power loss or OS crash may lose the last commits (never corrupts).
    Normal,
    /// No syncing at all: an OS crash can corrupt the file. Tests and scratch
    /// data only.
    Off,
}

impl Synchronous {
    fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Off => SqliteSynchronous::Off,
        }
    }
}

/// Configures and opens a [`SqliteBackend`]; see [`SqliteBackend::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build().await to open the database"]
pub struct SqliteBuilder {
    path: PathBuf,
    synchronous: Synchronous,
    max_connections: u32,
    busy_timeout: Duration,
    create_if_missing: bool,
}

impl SqliteBuilder {
    /// `PRAGMA synchronous` for every connection. Default [`Synchronous::Full`].
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Most connections this backend opens: one writer plus up to `n - 1`
    /// readers. With `n <= 1`, reads share the writer connection. Default 5.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a statement waits for another process's lock before failing
    /// with "database is locked". Default 5 seconds.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Create the file if it does not exist (default `true`). When `false`,
    /// [`build`](Self::build) fails with [`StoreError::NotFound`] for a
    /// missing file.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Opens the database (in WAL mode). Does not create tables: call
    /// [`SqliteBackend::init_db`].
    pub async fn build(self) -> Result<SqliteBackend, StoreError> {
        if !self.create_if_missing && !self.path.exists() {
            return Err(StoreError::NotFound(format!(
                "SQLite database file {}",
                self.path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(self.create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(self.synchronous.to_sqlx())
            .busy_timeout(self.busy_timeout)
            .foreign_keys(false);
        // The writer's scripts (see `script`) are cached per shape: room
        // for more than sqlx's default of 100.
        let writer = options
            .clone()
            .statement_cache_capacity(WRITER_STATEMENT_CACHE)
            .connect()
            .await
            .map_err(|e| error::database_error(format!("opening {}", self.path.display()), e))?;
        let writer = writer_setup(writer).await?;
        let readers = (self.max_connections > 1).then(|| {
            SqlitePoolOptions::new()
                .max_connections(self.max_connections - 1)
                .min_connections(0)
                .connect_lazy_with(options.clone())
        });
        SqliteBackend::from_parts(writer, readers, Some(self.path))
    }
}

/// Storage on one SQLite file. Cloning gives another handle to the same
/// connections.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer task's queue; dropping it (with the last handle) ends the task.
    requests: mpsc::UnboundedSender<Request>,
    /// The writer connection: used by the writer task, by `init_db`, and for
    /// reads when there is no reader pool.
    writer: Arc<Mutex<WriterConn>>,
    readers: Option<SqlitePool>,
    path: Option<PathBuf>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .field("reader_pool", &self.inner.readers.is_some())
            .finish()
    }
}

impl SqliteBackend {
    /// A builder for the database at `path`, with the defaults: WAL,
    /// `synchronous=FULL`, 5 connections, 5 s busy timeout, create if missing.
    pub fn builder(path: impl AsRef<Path>) -> SqliteBuilder {
        SqliteBuilder {
            path: path.as_ref().to_path_buf(),
            synchronous: Synchronous::Full,
            max_connections: 5,
            busy_timeout: Duration::from_secs(5),
            create_if_missing: true,
        }
    }

    /// Opens (creating it if missing) the database at `path` with the defaults.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteBackend, StoreError> {
        Self::builder(path).build().await
    }

    /// Opens an existing database; [`StoreError::NotFound`] if the file does
    /// not exist. For inspection tools that must not create an empty file.
    pub async fn open_existing(path: impl AsRef<Path>) -> Result<SqliteBackend, StoreError> {
        Self::builder(path).create_if_missing(false).build().await
    }

    /// A private in-memory database on a single connection (reads and writes
    /// share it). Gone when the last clone is dropped. Call
    /// [`init_db`](Self::init_db) before use.
    pub async fn in_memory() -> Result<SqliteBackend, StoreError> {
        let conn = SqliteConnectOptions::new()
            .in_memory(true)
            .statement_cache_capacity(WRITER_STATEMENT_CACHE)
            .foreign_keys(false)
            .connect()
            .await
            .map_err(|e| crate::error::database_error("opening in-memory database", e))?;
        let conn = writer_setup(conn).await?;
        Self::from_parts(conn, None, None)
    }

    /// Starts the writer task on the current tokio runtime.
    fn from_parts(
        writer: SqliteConnection,
        readers: Option<SqlitePool>,
        path: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::database(format!(
                "SqliteBackend must be opened inside a tokio runtime: {e}"
            ))
        })?;
        let writer = Arc::new(Mutex::new(WriterConn::new(writer)));
        let counters = Arc::new(Counters::new());
        let (requests, queue) = mpsc::unbounded_channel();
        runtime.spawn(writer::run(queue, writer.clone(), counters.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                requests,
                writer,
                readers,
                path,
                counters,
            }),
        })
    }

    /// The database file, or `None` for [`in_memory`](Self::in_memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Creates the schema, or upgrades it to this build's version, by running
    /// the embedded migrations that have not run yet. Running it again is
    /// harmless. Fails if the file holds migrations this build does not know
    /// (it was written by a newer version) or an applied migration was changed.
    pub async fn init_db(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        let mut writer = self.inner.writer.lock().await;
        let conn = writer.conn().await;
        // A file a newer stent wrote is left as it is, with an error that
        // says so (rather than the migrator's about a missing migration).
        if let Some(found) = applied_version(&mut *conn).await?
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        migrator
            .run(conn)
            .await
            .map_err(|e| StoreError::database(format!("init_db (migrations): {e}")))
    }

    /// Checks that the file holds stent's tables at a schema version this
    /// build knows: [`StoreError::SchemaMissing`] if it holds none,
    /// [`StoreError::SchemaTooNew`] if a newer stent wrote it. (An older
    /// version is upgraded by [`init_db`](Self::init_db).) Writes nothing.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.reader("check_schema").await?;
        match applied_version(&mut conn).await? {
            None => Err(StoreError::SchemaMissing(match self.path() {
                Some(path) => format!("SQLite file {}", path.display()),
                None => "this SQLite database".to_string(),
            })),
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }),
            Some(_) => Ok(()),
        }
    }

    /// How many write transactions the writer task has committed: with group
    /// commit, fewer than the writes when they came concurrently. For tests.
    #[doc(hidden)]
    pub fn transactions_committed(&self) -> u64 {
        self.inner.counters.transactions_committed()
    }

    /// Sends a write to the writer task and waits for its result. `make`
    /// builds the request around the reply channel.
    async fn write<T>(
        &self,
        op: &'static str,
        make: impl FnOnce(Pending<T>) -> Request,
    ) -> StoreResult<T> {
        let stopped = || {
            StoreError::database(format!(
                "{op}: the writer task has stopped (was the tokio runtime that opened \
                 the backend shut down?)"
            ))
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .send(make(Pending::new(reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A connection for reading: from the reader pool, or the writer.
    async fn reader(&self, op: &'static str) -> Result<ReadConn<'_>, StoreError> {
        match &self.inner.readers {
            Some(pool) => Ok(ReadConn::Pool(pool.acquire().await.map_err(db(op))?)),
            None => {
                let mut writer = self.inner.writer.lock().await;
                // Makes sure no transaction is left open on it.
                writer.conn().await;
                Ok(ReadConn::Writer(writer))
            }
        }
    }
}

enum ReadConn<'a> {
    Pool(PoolConnection<Sqlite>),
    Writer(MutexGuard<'a, WriterConn>),
}

impl Deref for ReadConn<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            ReadConn::Pool(c) => c,
            ReadConn::Writer(c) => c.get(),
        }
    }
}

impl DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            ReadConn::Pool(c) => &mut *c,
            ReadConn::Writer(c) => c.get_mut(),
        }
    }
}

/// Maps a sqlx error to [`StoreError::Database`] naming the operation.
fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| error::database_error(op, e)
}
