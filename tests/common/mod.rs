//! Helpers shared by stent's integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
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
}

impl<B> CountingBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            events_read: Arc::default(),
            commits: Arc::default(),
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
        let rows = self.inner.read_journal(invocation, from).await?;
        self.events_read
            .fetch_add(rows.len() as u64, Ordering::SeqCst);
        Ok(rows)
    }
}

#[async_trait]
impl<B: Backend> ExecutionStore for CountingBackend<B> {
    async fn create_execution(&self, execution: NewExecution) -> StoreResult<()> {
        self.inner.create_execution(execution).await
    }
    async fn execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.inner.execution(id).await
    }
    async fn list_executions(&self, filter: ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        self.inner.list_executions(filter).await
    }
    async fn queue_depth(&self, queue: Option<&str>, now: Timestamp) -> StoreResult<u64> {
        self.inner.queue_depth(queue, now).await
    }
}

#[async_trait]
impl<B: Backend> TaskStore for CountingBackend<B> {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedTask>> {
        self.inner.claim(request).await
    }
    async fn renew_leases(
        &self,
        worker: &WorkerId,
        leases: &[(InvocationId, LeaseEpoch)],
        until: Timestamp,
    ) -> StoreResult<Vec<InvocationId>> {
        self.inner.renew_leases(worker, leases, until).await
    }
    async fn inbox(&self, invocation: InvocationId) -> StoreResult<Vec<InboxItem>> {
        self.inner.inbox(invocation).await
    }
    async fn commit(&self, turns: Vec<TurnCommit>) -> StoreResult<()> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(turns).await
    }
}

#[async_trait]
impl<B: Backend> SignalStore for CountingBackend<B> {
    async fn send_signal(
        &self,
        execution: ExecutionId,
        name: &str,
        payload: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<SignalId> {
        self.inner.send_signal(execution, name, payload, now).await
    }
    async fn pending_signals(
        &self,
        execution: ExecutionId,
        names: &[String],
    ) -> StoreResult<Vec<SignalRecord>> {
        self.inner.pending_signals(execution, names).await
    }
}

pub mod crash;
