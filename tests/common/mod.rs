//! Helpers shared by stent's integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use faults::{Call, StoreFaults};
use stent_journal::store::*;
use stent_journal::{ExecutionId, InvocationId, LeaseEpoch, Seq, Timestamp, WorkerId};

/// Wraps a backend and counts the journal events read through it.
#[derive(Clone)]
pub struct CountingBackend<B> {
    /// The wrapped backend.
    pub inner: B,
    /// Journal rows returned by `read_journal` so far.
    pub events_read: Arc<AtomicU64>,
    /// Commits so far.
    pub commits: Arc<AtomicU64>,
    /// Reads of one execution's record so far.
    pub execution_reads: Arc<AtomicU64>,
    /// Most invocations created by one commit.
    pub max_spawns_per_commit: Arc<AtomicU64>,
    /// Commits still to refuse (with a database error, as a lost
    /// connection would) before the next one goes through.
    pub failing_commits: Arc<AtomicU64>,
    /// A resource every commit holds while it runs (as a pooled connection
    /// is), which step bodies can hold too.
    pub commit_gate: Arc<std::sync::Mutex<Option<&'static tokio::sync::Semaphore>>>,
    /// A worker cut off from the store: its claims and lease renewals fail
    /// (as in a network partition); its commits still reach the store, so
    /// the fence is what refuses them.
    pub partitioned: Arc<std::sync::Mutex<Option<WorkerId>>>,
    /// Storage faults armed on every call (see [`faults`]).
    pub faults: Arc<StoreFaults>,
}

impl<B> CountingBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            events_read: Arc::default(),
            commits: Arc::default(),
            execution_reads: Arc::default(),
            max_spawns_per_commit: Arc::default(),
            failing_commits: Arc::default(),
            commit_gate: Arc::default(),
            partitioned: Arc::default(),
            faults: Arc::default(),
        }
    }

    /// Cuts `worker` off from the store (see [`CountingBackend::partitioned`]).
    pub fn partition(&self, worker: &str) {
        *self.partitioned.lock().unwrap() = Some(WorkerId::new(worker));
    }

    fn cut_off(&self, worker: &WorkerId) -> StoreResult<()> {
        match &*self.partitioned.lock().unwrap() {
            Some(w) if w == worker => Err(StoreError::unavailable(format!(
                "worker {worker} is partitioned from the store"
            ))),
            _ => Ok(()),
        }
    }

    /// Journal rows read so far.
    pub fn events_read(&self) -> u64 {
        self.events_read.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<B: Backend> JournalStore for CountingBackend<B> {
    async fn read_journal(
        &self,
        invocation: InvocationId,
        from: Seq,
    ) -> StoreResult<Vec<JournalRow>> {
        let rows = self
            .faults
            .run(Call::ReadJournal, self.inner.read_journal(invocation, from))
            .await?;
        self.events_read
            .fetch_add(rows.len() as u64, Ordering::SeqCst);
        Ok(rows)
    }
    async fn read_execution_journal(
        &self,
        execution: ExecutionId,
        kinds: Option<&[stent_journal::EventKind]>,
    ) -> StoreResult<Vec<(InvocationId, Vec<JournalRow>)>> {
        let groups = self
            .faults
            .run(
                Call::ReadJournal,
                self.inner.read_execution_journal(execution, kinds),
            )
            .await?;
        let n: usize = groups.iter().map(|(_, rows)| rows.len()).sum();
        self.events_read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(groups)
    }
}

#[async_trait]
impl<B: Backend> ExecutionStore for CountingBackend<B> {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        self.faults
            .run(
                Call::CreateExecution,
                self.inner.create_execution(execution),
            )
            .await
    }
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.execution_reads.fetch_add(1, Ordering::SeqCst);
        self.faults
            .run(Call::Execution, self.inner.execution(id))
            .await
    }
    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        self.faults
            .run(Call::Other, self.inner.list_executions(filter))
            .await
    }
    async fn queue_depth(&self, queue: Option<&str>, now: Timestamp) -> StoreResult<u64> {
        self.faults
            .run(Call::Other, self.inner.queue_depth(queue, now))
            .await
    }
    async fn end_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        terminal_event: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.faults
            .run(
                Call::EndExecution,
                self.inner.end_execution(id, status, terminal_event, now),
            )
            .await
    }
    async fn cleanup(&self, before: Timestamp, dry_run: bool) -> StoreResult<CleanupCounts> {
        self.faults
            .run(Call::Other, self.inner.cleanup(before, dry_run))
            .await
    }
    async fn resume_execution(&self, id: ExecutionId, now: Timestamp) -> StoreResult<bool> {
        self.faults
            .run(Call::Other, self.inner.resume_execution(id, now))
            .await
    }
}

#[async_trait]
impl<B: Backend> DeadLetterStore for CountingBackend<B> {
    async fn list_dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetterRecord>> {
        self.faults
            .run(Call::Other, self.inner.list_dead_letters(limit))
            .await
    }
    async fn get_dead_letter(&self, task: InvocationId) -> StoreResult<Option<DeadLetterRecord>> {
        self.faults
            .run(Call::Other, self.inner.get_dead_letter(task))
            .await
    }
    async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.faults
            .run(
                Call::Other,
                self.inner
                    .replay_dead_letter(task, queue, reset_retries, now),
            )
            .await
    }
    async fn discard_dead_letter(
        &self,
        task: InvocationId,
        deliver: Option<Delivery>,
        execution: Option<ExecutionOutcome>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.faults
            .run(
                Call::Other,
                self.inner
                    .discard_dead_letter(task, deliver, execution, now),
            )
            .await
    }
}

#[async_trait]
impl<B: Backend> CacheStore for CountingBackend<B> {
    async fn cache_get(&self, key: stent_journal::CallKey) -> StoreResult<Option<Vec<u8>>> {
        self.faults
            .run(Call::Other, self.inner.cache_get(key))
            .await
    }
}

#[async_trait]
impl<B: Backend> IdempotencyStore for CountingBackend<B> {
    async fn begin_idempotent(
        &self,
        key: &str,
        owner: InvocationId,
    ) -> StoreResult<IdempotencyBegin> {
        self.faults
            .run(
                Call::BeginIdempotent,
                self.inner.begin_idempotent(key, owner),
            )
            .await
    }
}

#[async_trait]
impl<B: Backend> TaskStore for CountingBackend<B> {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        self.cut_off(&request.worker)?;
        // A claim trap fires on a claim that finds work, not on an idle poll.
        let trap = match self.faults.armed_for(Call::Claim) {
            true => {
                let stats = self.inner.stats(request.now).await?;
                match stats.queues.iter().any(|q| q.due > 0) {
                    true => self.faults.take(Call::Claim, None),
                    false => None,
                }
            }
            false => None,
        };
        self.faults
            .apply(Call::Claim, trap, self.inner.claim(request))
            .await
    }
    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        self.cut_off(worker)?;
        self.faults
            .run(
                Call::Renew,
                self.inner.renew_leases(worker, leases, now, until),
            )
            .await
    }
    async fn announce_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.faults
            .run(Call::Other, self.inner.announce_worker(worker))
            .await
    }
    async fn retire_worker(&self, worker: &WorkerId) -> StoreResult<()> {
        self.faults
            .run(Call::Other, self.inner.retire_worker(worker))
            .await
    }
    async fn forgive_takeover(
        &self,
        invocation: InvocationId,
        epoch: LeaseEpoch,
    ) -> StoreResult<()> {
        self.faults
            .run(Call::Renew, self.inner.forgive_takeover(invocation, epoch))
            .await
    }
    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        self.faults
            .run(Call::Inbox, self.inner.inbox(invocation))
            .await
    }
    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()> {
        let refuse = self
            .failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Err(StoreError::database("commit refused by the test"));
        }
        let gate = *self.commit_gate.lock().unwrap();
        let _permit = match gate {
            Some(gate) => Some(
                gate.acquire()
                    .await
                    .map_err(|e| StoreError::database(e.to_string()))?,
            ),
            None => None,
        };
        self.commits.fetch_add(1, Ordering::SeqCst);
        let spawns: usize = turns.iter().map(|t| t.spawn.len()).sum();
        self.max_spawns_per_commit
            .fetch_max(spawns as u64, Ordering::SeqCst);
        let trap = self.faults.take(Call::Commit, Some(&turns));
        self.faults
            .apply(Call::Commit, trap, self.inner.commit(turns))
            .await
    }
}

#[async_trait]
impl<B: Backend> SignalStore for CountingBackend<B> {
    async fn send_signal_keyed(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        self.faults
            .run(
                Call::SendSignal,
                self.inner
                    .send_signal_keyed(execution, name, payload, key, now),
            )
            .await
    }
    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        self.faults
            .run(
                Call::PendingSignals,
                self.inner.pending_signals(execution, names),
            )
            .await
    }
}

pub mod crash;
pub mod faults;
pub mod fleet;
pub mod harness;
pub mod pg_server;
pub mod proxy;
mod targets;
pub mod versions;

pub use harness::TestWorker;

#[async_trait]
impl<B: Backend> InspectStore for CountingBackend<B> {
    async fn list_tasks(&self, filter: TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        self.faults
            .run(Call::Other, self.inner.list_tasks(filter))
            .await
    }
    async fn task(&self, invocation: InvocationId) -> StoreResult<Option<TaskRecord>> {
        self.faults
            .run(Call::Other, self.inner.task(invocation))
            .await
    }
    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.faults.run(Call::Other, self.inner.workers()).await
    }
    async fn task_failures(&self, invocation: InvocationId) -> StoreResult<Vec<AttemptFailure>> {
        self.faults
            .run(Call::Other, self.inner.task_failures(invocation))
            .await
    }
    async fn stats(&self, now: Timestamp) -> StoreResult<StoreStats> {
        self.faults.run(Call::Other, self.inner.stats(now)).await
    }
}

/// A PostgreSQL schema of one test's own, with stent's tables in it; the
/// schema and everything in it is dropped when this value is.
pub struct PgTestSchema {
    /// The backend on the schema.
    pub backend: stent::backends::PostgresBackend,
    url: String,
    name: String,
}

impl PgTestSchema {
    /// The server's URL (without the schema).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The PostgreSQL server the tests use: `STENT_TEST_PG_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn pg_url() -> String {
    stent_test_services::pg_url()
}

/// The socket address of the server of a `postgres://` URL.
pub async fn pg_address(url: &str) -> std::io::Result<std::net::SocketAddr> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    tokio::net::lookup_host(host_port.as_str())
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host_port} resolves to no address")))
}

/// `url` with its host and port replaced by `addr`, in plain text
/// (`sslmode=disable`): the URL to reach the server through a
/// [`proxy::FaultProxy`], which reads the protocol.
pub fn pg_url_via(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
        .collect();
    params.push("sslmode=disable");
    format!("{scheme}://{user}{addr}{path}?{}", params.join("&"))
}

/// A fresh schema named `prefix_<random>` on `STENT_TEST_PG_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`), or `None` when nothing
/// answers there (the skip is recorded; a failure instead when
/// `STENT_REQUIRE_SERVICES=1`). Once the server answers, any error is a
/// failure.
pub async fn pg_test_schema(prefix: &str) -> Option<PgTestSchema> {
    let url = pg_url();
    if !stent_test_services::available("PostgreSQL", &url) {
        return None;
    }
    let name = format!(
        "{prefix}_{}",
        stent::ExecutionId::new_random().as_uuid().simple()
    );
    let backend = stent::backends::PostgresBackend::builder(&url)
        .schema(&name)
        .build()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} answers but: {e}"));
    backend.init_db().await.expect("init_db");
    Some(PgTestSchema { backend, url, name })
}

impl Drop for PgTestSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (maybe a current-thread one,
        // maybe unwinding): use a connection and a runtime of its own.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}
