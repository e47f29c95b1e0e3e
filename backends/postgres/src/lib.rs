//! The PostgreSQL storage backend of stent: many worker processes on many
//! hosts sharing one database.
//!
//! [`PostgresBackend`] implements every storage trait of
//! [`stent_journal::store`] on PostgreSQL through sqlx (runtime queries with
//! binds; no compile-time macros, no build-time database). Claims take tasks
//! with `FOR UPDATE SKIP LOCKED`, so any number of workers can claim from the
//! same tables without waiting on each other or taking a task twice; every
//! write is fenced by the lease epoch.
//!
//! ```no_run
//! use stent_postgres::PostgresBackend;
//!
//! # async fn demo() -> Result<(), stent_journal::store::StoreError> {
//! // Tables in the connection's default schema (usually `public`).
//! let backend = PostgresBackend::connect("postgres://stent@db.internal/app").await?;
//! backend.init_db().await?; // creates or upgrades the schema; harmless to repeat
//!
//! // Or tuned, with the tables in their own schema.
//! let tuned = PostgresBackend::builder("postgres://stent@db.internal/app")
//!     .max_connections(20)
//!     .schema("stent")
//!     .acquire_timeout(std::time::Duration::from_secs(5))
//!     .build()
//!     .await?;
//! tuned.init_db().await?; // creates the schema `stent` if missing
//! # Ok(()) }
//! ```
//!
//! # Connections and transactions
//!
//! The backend holds a sqlx connection pool (default 10 connections). Most
//! operations are a single statement (data-modifying CTEs put the several
//! writes of, say, creating an execution or sending a signal into one
//! statement, which PostgreSQL applies atomically); claims with concurrency
//! limits, commits, ending an execution and dead-letter replay or discard run
//! in one explicit transaction each. A whole [`TaskStore::commit`] call — every
//! turn in it — is one transaction: a turn refused for a lost lease
//! ([`StoreError::LeaseLost`] naming that turn's invocation and epoch) or a
//! conflict ([`StoreError::Conflict`]) rolls back the other turns too. (The
//! commonest commit, one turn that appends events and holds, parks, retries or
//! finishes its task with nothing else to write, is a single statement: the
//! fenced update of the task with the events appended only if it matched.
//! One or two turns that also spawn children or end the execution — a
//! sequential step's child and parent, say — are one statement generated for
//! their shape. Larger batches, and turns that consume inbox items or
//! deliver a result, are one call of a PL/pgSQL function: `stent_commit_set`
//! (migration 9) when the turns are of distinct invocations and none
//! delivers to another's, which writes each kind of row for all of them at
//! once, else `stent_commit` (migrations 2 to 4), which applies them one by
//! one. Both raise SQLSTATE `SL001` for a lost lease, undoing the batch; only
//! turns that consume signals, write the cache or idempotency keys, pause
//! or dead-letter use an explicit transaction.)
//!
//! Isolation is PostgreSQL's default, `READ COMMITTED`; correctness comes from
//! row locks. A commit's first statement updates its task only if it is still
//! leased at the writer's epoch; a concurrent takeover holds the row lock, so
//! the commit waits for it and then finds the epoch changed. If PostgreSQL
//! aborts a statement to break a deadlock (a signal waking an execution's
//! tasks while a worker commits two of them, say) or for a serialization
//! failure, the whole transaction is retried a few times before the error is
//! reported; nothing of an aborted attempt is kept.
//!
//! A lost connection is a [`StoreError::Database`] for the call that was
//! using it (for a commit, the outcome is then unknown; the fencing makes a
//! retry safe). The pool tests connections that sat idle before handing them
//! out (see [`PostgresBuilder::check_connections`] and
//! [`PostgresBuilder::check_idle_for`]) and opens new ones, so later calls
//! work again once the server is back.
//!
//! Commits and execution creations keep a few connections checked out
//! between their statements (a quarter of the pool for each, none for a
//! pool of fewer than four),
//! because sqlx pings every connection given back to the pool, a second
//! round trip per statement. A kept connection is used again only after
//! the server answered its last statement, is checked like the pool's own
//! when it sat idle, and goes back to the pool when it is closed (through
//! [`PostgresBackend::close`] or the pool's own `close`).
//!
//! Commits and the other transactions run on a tokio task of their own: a
//! caller that stops waiting (a timeout, a dropped future) gets no answer,
//! but the transaction still ends with `COMMIT` or `ROLLBACK` as if it had
//! waited. (Dropping a sqlx transaction half-way is not safe: a `BEGIN`
//! cancelled before its reply leaves the pooled connection inside a
//! transaction sqlx does not know about, and later statements on it would
//! never commit.) Code sharing the [`PostgresBackend::pool`] should be as
//! careful.
//!
//! [`TaskStore::commit`]: stent_journal::store::TaskStore::commit
//!
//! # TLS
//!
//! Connections use TLS as libpq's do, per the URL's `sslmode`: `prefer` (the
//! default: TLS when the server offers it), `require`, `verify-ca`,
//! `verify-full`, or `disable`; `sslrootcert=` names a CA file to trust
//! besides the operating system's roots. TLS is rustls with the ring
//! provider, so there is no OpenSSL to link. A certificate that fails the
//! check is a [`StoreError::Database`] naming why (an unknown issuer, a
//! host name the certificate does not cover).
//!
//! # Group commit
//!
//! Under load, calls of the same kind are gathered into one statement:
//! concurrent [`TaskStore::commit`] calls (whose turns a commit function
//! takes) become one call of it, concurrent [`ExecutionStore::create_execution`]
//! calls one multi-row insert, concurrent [`ExecutionStore::execution`]
//! reads one `WHERE id = ANY(..)`. Each kind has a few slots (a quarter of
//! the pool each); a call that finds a slot free runs at once, alone, and
//! the calls that arrive while every slot is busy go out together as soon
//! as one frees, up to 64 at a time. Nothing waits for a batch to fill, so
//! a lone call costs what it did without batching; when calls pile up, a
//! round trip, a transaction and a WAL flush serve many of them.
//!
//! Each caller still gets its own answer. A batch is one transaction: if
//! the server refuses any of it (a lost lease, a conflict, an execution
//! that already exists), nothing of it is kept and each call in it runs
//! again on its own, so the failure reaches the caller it belongs to and
//! the others go through. A lost connection fails every call of the batch
//! with the same [`StoreError::Database`], whose outcome is unknown, as it
//! would an unbatched call. Batches run on the backend's own tasks, so a caller that stops
//! waiting does not cut one short. [`PostgresBackend::group_commit_stats`]
//! tells how many calls went out in how many batches;
//! [`PostgresBuilder::group_commit`]`(false)` sends every call alone.
//!
//! [`ExecutionStore::create_execution`]: stent_journal::store::ExecutionStore::create_execution
//! [`ExecutionStore::execution`]: stent_journal::store::ExecutionStore::execution
//!
//! # Concurrency limits
//!
//! A claim whose request limits some of its functions takes a
//! transaction-level advisory lock per limited function
//! (`pg_advisory_xact_lock`, keyed by a hash of the schema and the function
//! name), then counts the function's unexpired leases, takes its first
//! free-slots candidates (and the first `limit` of the unlimited functions),
//! merges them in claim order and leases the first `limit`. Claimers of a
//! limited function thus take turns, and each sees the leases the previous
//! one committed, so a limit holds across any number of workers. A claim
//! without limits takes no advisory lock and is one statement.
//!
//! # Schema
//!
//! Created by [`PostgresBackend::init_db`] from the embedded migrations in
//! `migrations/` (tracked in sqlx's `_sqlx_migrations` table in the same
//! schema). With [`PostgresBuilder::schema`] every pooled connection gets that
//! schema as its `search_path` and `init_db` creates it if missing, so one
//! database can hold several independent stent installations (or test runs).
//! Ids are `UUID`, times are Unix milliseconds (`BIGINT`), tags are `TEXT[]`
//! and payloads are opaque `BYTEA` (CBOR) the backend never decodes.
//!
//! | table | columns | meaning |
//! |---|---|---|
//! | `executions` | `id`, `function`, `status`, `queue`, `priority`, `tags`, `created_at`, `started_at`, `completed_at`, `deadline`, `terminal_event`, `pause_report` | one row per dispatched execution; `status` is `pending`, `running`, `completed`, `failed`, `timed_out`, `cancelled` or `paused`; `queue`, `priority` and `tags` are the root task's |
//! | `tasks` | `invocation_id`, `execution_id`, `function`, `queue`, `priority`, `tags`, `state`, `run_at`, `lease_owner`, `lease_until`, `epoch`, `attempts`, `lapsed_epoch`, `retries`, `last_failed_at`, `last_error`, `wake`, `created` | one row per invocation: the work queue. `state` is `ready` (claimable once `run_at` passes), `leased` (held by `lease_owner` until `lease_until`), `waiting` (parked until woken), `done`, `paused`, `dead` (dead-lettered) or `cancelled` (its execution was ended). `epoch` is bumped by every claim and fences every write; `attempts` counts the claims since the lease holder last committed, less the takeovers of lapsed leases whose holders reported them alive; `lapsed_epoch` is the epoch of the lapsed lease the last claim took over; `retries` the retries of the task; `last_failed_at` and `last_error` when and why its last retried attempt failed; `wake` records a delivery or signal that arrived while the task was leased; `created` (an identity column) is the creation order (ties of priority and `run_at` are claimed oldest first) |
//! | `journal` | `invocation_id`, `seq`, `kind`, `call_key`, `payload`, `recorded_at` | the append-only journal, primary key `(invocation_id, seq)` |
//! | `inbox` | `id`, `invocation_id`, `event` | results of finished children not yet appended to their parent's journal |
//! | `signals` | `id`, `execution_id`, `name`, `payload`, `consumed_by`, `created_at` | signals sent to executions; `consumed_by` is the invocation that received it |
//! | `dead_letters` | `task_id`, `execution_id`, `function`, `queue`, `reason`, `retries`, `failed_at` | tasks (state `dead`) that ran out of attempts, until replayed or discarded |
//! | `task_failures` | `invocation_id`, `attempt`, `failed_at`, `error` | each failed attempt of a task that was retried (the last 50 per task), numbered from 1 |
//! | `cache` | `call_key`, `value`, `created_at` | results shared across executions by call key; the first writer wins |
//! | `idempotency` | `key`, `owner`, `state`, `value` | idempotency keys: `state` is `running` (held by invocation `owner`) or `done` (with its `value`) |
//!
//! Indexes (the partial ones leave out finished tasks, which are most of the
//! table over time): `tasks(priority DESC, run_at, created)` and
//! `tasks(run_at)`, both `WHERE state = 'ready'`, for claims (the planner
//! walks the first in claim order when many tasks are due, or takes the due
//! ones from the second and sorts them); `tasks(function, priority DESC,
//! run_at, created) WHERE state = 'ready'` for the first few tasks of a
//! function with a concurrency limit; `tasks(function, lease_until) WHERE
//! state = 'leased'` for expired and live leases; `tasks(execution_id,
//! created)` for signal wake-ups, ending an execution and reading its whole
//! journal; `inbox(invocation_id, id)`; `signals(execution_id, name, id)
//! WHERE consumed_by IS NULL`; `executions` by `created_at` and by `(status,
//! created_at)` for listing, and by `completed_at` for cleanup;
//! `dead_letters` by `(failed_at DESC, task_id)` and by `execution_id`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use stent_journal::store::{DatabaseError, DatabaseErrorKind, StoreError};

mod batch;
mod error;
mod held;
mod notify;
mod shaped;
mod sql;
mod store;

pub use batch::BatchCounts;
pub use notify::NotificationListener;

/// What group commit did so far on one backend (and its clones): see
/// [`PostgresBackend::group_commit_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// [`TaskStore::commit`](stent_journal::store::TaskStore::commit) calls.
    pub commits: BatchCounts,
    /// [`ExecutionStore::create_execution`](stent_journal::store::ExecutionStore::create_execution) calls.
    pub creates: BatchCounts,
    /// [`ExecutionStore::execution`](stent_journal::store::ExecutionStore::execution) calls.
    pub reads: BatchCounts,
}

/// The embedded schema migrations, in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "commit_function",
        include_str!("../migrations/0002_commit_function.sql"),
    ),
    (
        3,
        "commit_skips_empty",
        include_str!("../migrations/0003_commit_skips_empty.sql"),
    ),
    (
        4,
        "ordered_locks",
        include_str!("../migrations/0004_ordered_locks.sql"),
    ),
    (
        5,
        "failures_and_filters",
        include_str!("../migrations/0005_failures_and_filters.sql"),
    ),
    (
        6,
        "code_version",
        include_str!("../migrations/0006_code_version.sql"),
    ),
    (
        7,
        "signal_keys",
        include_str!("../migrations/0007_signal_keys.sql"),
    ),
    (
        8,
        "lease_lost",
        include_str!("../migrations/0008_lease_lost.sql"),
    ),
    (
        9,
        "set_commit",
        include_str!("../migrations/0009_set_commit.sql"),
    ),
];

/// How long a connection sits idle before it is checked, by default.
const CHECK_IDLE_FOR: Duration = Duration::from_secs(1);

/// How many times a transaction aborted by a deadlock or a serialization
/// failure is run before the error is reported.
const MAX_ATTEMPTS: u32 = 5;

/// Configures and connects a [`PostgresBackend`]; see [`PostgresBackend::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build().await to connect"]
pub struct PostgresBuilder {
    url: String,
    max_connections: u32,
    schema: Option<String>,
    acquire_timeout: Duration,
    application_name: Option<String>,
    check_connections: bool,
    check_idle_for: Duration,
    group_commit: bool,
    lease_clock: LeaseClock,
}

/// Whose clock decides when a lease has run out.
///
/// Workers pass the time of their executor's clock with every claim,
/// renewal and commit. Compared with each other, the clocks of different
/// hosts differ: a worker whose clock runs ahead would see live leases of
/// other workers as expired, take them over and run their steps a second
/// time. So by default the server's clock decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeaseClock {
    /// The database server's: a lease granted or renewed for `d` runs out
    /// `d` after the server granted it, by the server's clock. Skew between
    /// hosts does not matter, only how fast their clocks run. The default.
    #[default]
    Database,
    /// The time each worker passes in (its executor's [clock]). Right for
    /// one host, and for tests that drive a virtual clock; with several
    /// hosts, their clocks must agree to well within a lease.
    ///
    /// [clock]: https://docs.rs/stent/latest/stent/trait.Clock.html
    Worker,
}

impl PostgresBuilder {
    /// Most connections the pool opens. Default 10.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Keep the tables in this schema: it becomes the `search_path` of every
    /// pooled connection (set when the connection opens), and
    /// [`PostgresBackend::init_db`] creates it if missing. The name is used as
    /// a quoted identifier (case-sensitive) and must be a plain one: ASCII
    /// letters, digits and `_`, not starting with a digit, at most 63 bytes.
    /// Default: none (the server's `search_path`, usually `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long a call waits for a pooled connection (including connecting,
    /// which is retried while the server refuses connections) before failing
    /// with [`StoreError::Database`]. Default 30 seconds.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether the pool checks (pings) a connection that sat idle before
    /// handing it out (see [`check_idle_for`](Self::check_idle_for)).
    /// Default `true`: after a server restart or failover the stale
    /// connections are replaced without failing a call. `false` saves that
    /// round trip, but then each stale connection fails one call with
    /// [`StoreError::Database`] before the pool replaces it.
    pub fn check_connections(mut self, check: bool) -> Self {
        self.check_connections = check;
        self
    }

    /// With [`check_connections`](Self::check_connections), ping only
    /// connections that sat idle in the pool at least this long. Default
    /// 1 second: a busy worker's connections, back in the pool for
    /// microseconds between calls, skip the extra round trip on every claim
    /// and commit (a third of a one-statement call's time), while
    /// connections that waited across a restart are still checked.
    /// `Duration::ZERO` pings before every call.
    pub fn check_idle_for(mut self, idle: Duration) -> Self {
        self.check_idle_for = idle;
        self
    }

    /// The `application_name` the connections report (shown in
    /// `pg_stat_activity`). Default: the URL's, or `stent`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Whether concurrent commits, execution creations and execution reads
    /// are gathered into one statement each while earlier ones are still
    /// running (see [Group commit](crate#group-commit)). Default `true`;
    /// `false` sends every call as its own statement.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.group_commit = enabled;
        self
    }

    /// Whose clock decides when a lease has run out. Default
    /// [`LeaseClock::Database`].
    pub fn lease_clock(mut self, clock: LeaseClock) -> Self {
        self.lease_clock = clock;
        self
    }

    /// Connects (opening one connection, to check the URL and credentials).
    /// Does not create tables: call [`PostgresBackend::init_db`].
    pub async fn build(self) -> Result<PostgresBackend, StoreError> {
        let backend = self.build_lazy()?;
        match backend.pool.acquire().await {
            Ok(conn) => drop(conn),
            Err(e) => return Err(connect_error(&backend.pool, e).await),
        }
        Ok(backend)
    }

    /// Like [`build`](Self::build), but opens no connection now: the first
    /// call that needs one connects (and fails with [`StoreError::Database`]
    /// if the server cannot be reached). The URL is still checked.
    pub fn build_lazy(self) -> Result<PostgresBackend, StoreError> {
        let group_commit = self.group_commit;
        let check_idle_for = self.check_connections.then_some(self.check_idle_for);
        let (pool, schema) = self.pool_parts()?;
        Ok(PostgresBackend::on(
            pool,
            schema,
            group_commit,
            check_idle_for,
        ))
    }

    fn pool_parts(self) -> Result<(PgPool, Option<String>), StoreError> {
        let mut options: PgConnectOptions = self
            .url
            .parse()
            .map_err(|e| StoreError::database(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
            options = options.options([("search_path", quote_ident(schema))]);
        }
        if self.lease_clock == LeaseClock::Worker {
            // Read by `stent_clock` (migration 4).
            options = options.options([("stent.lease_clock", "worker")]);
        }
        match &self.application_name {
            Some(name) => options = options.application_name(name),
            None if options.get_application_name().is_none() => {
                options = options.application_name("stent");
            }
            None => {}
        }
        let mut pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(0)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false);
        if self.check_connections {
            let idle = self.check_idle_for;
            pool = pool.before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= idle {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        }
        let pool = pool.connect_lazy_with(options);
        Ok((pool, self.schema))
    }
}

/// A first connection failed: say where to, and why. The pool reports only
/// that it timed out, so ask the server once more without it for the cause
/// (refused, unknown host, authentication, no such database…).
async fn connect_error(pool: &PgPool, e: sqlx::Error) -> StoreError {
    let options = pool.connect_options();
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default database)")
    );
    let (cause, kind, source) = match e {
        sqlx::Error::PoolTimedOut => {
            use sqlx::Connection;
            let direct = sqlx::postgres::PgConnection::connect_with(&options);
            match tokio::time::timeout(Duration::from_secs(5), direct).await {
                Ok(Err(direct)) => (direct.to_string(), error::kind_of_error(&direct), direct),
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    (
                        "no pooled connection within the acquire timeout (the server answers \
                         now: it may be overloaded or out of connections)"
                            .to_string(),
                        DatabaseErrorKind::Unavailable,
                        sqlx::Error::PoolTimedOut,
                    )
                }
                Err(_) => (
                    "no answer (is the server running, and reachable from here?)".into(),
                    DatabaseErrorKind::Unavailable,
                    sqlx::Error::PoolTimedOut,
                ),
            }
        }
        other => (other.to_string(), error::kind_of_error(&other), other),
    };
    StoreError::Database(
        DatabaseError::new(format!("connecting to PostgreSQL at {target}: {cause}"))
            .with_kind(kind)
            .with_source(source),
    )
}

/// Storage on a PostgreSQL database. Cloning gives another handle to the same
/// connection pool.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    schema: Option<String>,
    batches: Arc<store::Batches>,
    /// The connections commits and creations keep between their statements
    /// (see `held.rs`).
    keeper: Arc<held::Keeper>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

impl PostgresBackend {
    /// A builder for the database at `url` (`postgres://user:password@host:port/database`,
    /// with any libpq-style parameters sqlx understands), with the defaults:
    /// 10 connections, the server's `search_path`, 30 s acquire timeout.
    pub fn builder(url: impl Into<String>) -> PostgresBuilder {
        PostgresBuilder {
            url: url.into(),
            max_connections: 10,
            schema: None,
            acquire_timeout: Duration::from_secs(30),
            application_name: None,
            check_connections: true,
            check_idle_for: CHECK_IDLE_FOR,
            group_commit: true,
            lease_clock: LeaseClock::Database,
        }
    }

    /// Connects to the database at `url` with the defaults.
    pub async fn connect(url: &str) -> Result<PostgresBackend, StoreError> {
        Self::builder(url).build().await
    }

    /// A backend on an existing pool, used as is: its connections'
    /// `search_path` decides where the tables are.
    pub fn from_pool(pool: PgPool) -> PostgresBackend {
        // The pool's own checks are unknown here: check a kept connection
        // idle for as long as the builder's default would.
        PostgresBackend::on(pool, None, true, Some(CHECK_IDLE_FOR))
    }

    /// The backend on `pool`: group commit and kept connections sized by
    /// the pool's size.
    fn on(
        pool: PgPool,
        schema: Option<String>,
        group_commit: bool,
        check_idle_for: Option<Duration>,
    ) -> PostgresBackend {
        let connections = pool.options().get_max_connections();
        let keeper = held::Keeper::new(pool.clone(), held::kept_for(connections), check_idle_for);
        PostgresBackend {
            pool,
            schema,
            batches: Arc::new(store::Batches::new(group_commit, connections)),
            keeper,
        }
    }

    /// How many calls group commit gathered into how many statements so
    /// far (see [Group commit](crate#group-commit)); all zero with
    /// [`PostgresBuilder::group_commit`]`(false)`.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.batches.stats()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema set with [`PostgresBuilder::schema`], if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes the pool: waits for the connections in use to be returned and
    /// closes them all. Later calls fail with [`StoreError::Database`].
    pub async fn close(&self) {
        self.keeper.release();
        self.pool.close().await;
    }

    /// Creates the schema (and the builder's PostgreSQL schema, if missing),
    /// or upgrades it to this build's version, by running the embedded
    /// migrations that have not run yet. Running it again, or from several
    /// processes at once, is harmless (sqlx serializes migrations with an
    /// advisory lock). Fails if the database holds migrations this build does
    /// not know (it was written by a newer version) or an applied migration
    /// was changed. On a schema already at this version it only reads the
    /// migrations table, so a role without the right to create schemas or
    /// tables can run it.
    pub async fn init_db(&self) -> Result<(), StoreError> {
        let migrations: Vec<Migration> = MIGRATIONS
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
        let table = self.migrations_table();
        // A database a newer stent wrote is left as it is, with an error
        // that says so (rather than the migrator's about a missing one).
        if let Ok(Some(found)) = applied_version(&self.pool, &table).await
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if applied_already(&self.pool, &table, &migrations).await {
            // Nothing to do, and nothing written: a role with no right to
            // create schemas or tables can run it (sqlx's migrator would
            // issue `CREATE ... IF NOT EXISTS`, which needs those rights
            // even when everything exists).
            return Ok(());
        }
        let mut migrator = Migrator::with_migrations(migrations);
        if let Some(schema) = &self.schema {
            migrator.create_schema(quote_ident(schema));
            migrator.dangerous_set_table_name(table);
        }
        // On a task of its own, so that a caller giving up cannot cut a
        // migration transaction short (see the crate docs).
        let pool = self.pool.clone();
        tokio::spawn(async move { migrator.run(&pool).await })
            .await
            .map_err(|e| StoreError::database(format!("init_db: the migration task failed: {e}")))?
            .map_err(|e| StoreError::database(format!("init_db (migrations): {e}")))
    }
}

impl PostgresBackend {
    /// Checks that the database (the backend's schema) holds stent's
    /// tables at a schema version this build knows:
    /// [`StoreError::SchemaMissing`] if it holds none,
    /// [`StoreError::SchemaTooNew`] if a newer stent wrote it. (An older
    /// version is upgraded by [`init_db`](Self::init_db).) Writes nothing.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        match applied_version(&self.pool, &self.migrations_table()).await? {
            None => Err(StoreError::SchemaMissing(match &self.schema {
                Some(schema) => format!("schema {schema:?} of this PostgreSQL database"),
                None => "this PostgreSQL database (its search_path)".to_string(),
            })),
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }),
            Some(_) => Ok(()),
        }
    }

    fn migrations_table(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}._sqlx_migrations", quote_ident(schema)),
            None => "_sqlx_migrations".to_string(),
        }
    }
}

/// The newest schema version this build knows (its last migration).
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The newest migration `table` records as applied; `None` if there is no
/// such table (no stent tables at all).
async fn applied_version(pool: &PgPool, table: &str) -> Result<Option<i64>, StoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(|e| crate::error::database_error("reading the schema version", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let query = format!("SELECT MAX(version) FROM {table} WHERE success");
    sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_one(pool)
        .await
        .map_err(|e| crate::error::database_error("reading the schema version", e))
}

/// True if `table` records exactly `migrations` as applied, successfully
/// and with the same checksums. Any doubt (no table, another set, a failed
/// or changed migration) is `false`: the migrator then runs and reports it.
async fn applied_already(pool: &PgPool, table: &str, migrations: &[Migration]) -> bool {
    let query = format!("SELECT version, success, checksum FROM {table} ORDER BY version");
    let Ok(rows) = sqlx::query_as::<_, (i64, bool, Vec<u8>)>(sqlx::AssertSqlSafe(query))
        .fetch_all(pool)
        .await
    else {
        return false;
    };
    rows.len() == migrations.len()
        && rows
            .iter()
            .zip(migrations)
            .all(|((version, success, checksum), m)| {
                *version == m.version && *success && checksum.as_slice() == &*m.checksum
            })
}

/// Refuses schema names that are not plain identifiers.
fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(StoreError::database(format!(
            "schema name {name:?} is not a plain identifier (ASCII letters, digits and '_', \
             not starting with a digit, at most 63 bytes)"
        )))
    }
}

/// A checked schema name as a quoted identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{name}\"")
}
