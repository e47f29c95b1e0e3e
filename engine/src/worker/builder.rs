//! [`WorkerBuilder`]: a worker's options, checked when it starts, and
//! [`WorkerBuilder::serve`], which runs it until it is told to drain.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stent_journal::{ExecutionId, WorkerId};
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::{Error, Result};
use crate::executor::{PollSettings, Stent};
use crate::lifecycle::{LifecycleState, WorkerLifecycle};

use super::Core;

/// Configures and runs a worker. Get one from [`Stent::worker`].
///
/// ```no_run
/// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
/// executor
///     .worker()
///     .worker_id("worker-1")
///     .queues(["default", "high_priority"])
///     .max_concurrency(50)
///     .lease_duration(std::time::Duration::from_secs(600))
///     .serve()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a worker does nothing until `serve` is awaited"]
pub struct WorkerBuilder {
    stent: Stent,
    worker_id: Option<String>,
    queues: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    max_concurrency: usize,
    lease_duration: Duration,
    heartbeat_interval: Option<Duration>,
    poll_interval: Duration,
    poll_interval_max: Option<Duration>,
    poll_backoff_factor: Option<f64>,
    sticky_timer: Duration,
    cleanup_interval: Option<Duration>,
    retention_period: Duration,
    lifecycle: Option<WorkerLifecycle>,
    also_runs: Vec<String>,
}

impl Stent {
    /// A worker over this executor's backend and registry.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder {
            stent: self.clone(),
            worker_id: None,
            queues: None,
            tags: None,
            max_concurrency: 10,
            lease_duration: Duration::from_secs(300),
            heartbeat_interval: None,
            poll_interval: Duration::from_secs(1),
            poll_interval_max: None,
            poll_backoff_factor: None,
            sticky_timer: Duration::from_secs(2),
            cleanup_interval: Some(Duration::from_secs(3600)),
            retention_period: Duration::from_secs(7 * 24 * 3600),
            lifecycle: None,
            also_runs: Vec::new(),
        }
    }
}

impl WorkerBuilder {
    /// The worker's name (default: a random one).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Only claim tasks of these queues.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Also claim executions of these code versions, besides those of the
    /// executor's own (`StentBuilder::code_version`): a build known to
    /// replay them (the deploy check says so) takes them over from the old
    /// workers. Only meaningful with a code version: a worker without one
    /// claims every execution.
    pub fn also_runs<I, S>(mut self, versions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.also_runs.extend(versions.into_iter().map(Into::into));
        self
    }

    /// Only claim tasks carrying at least one of these tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Most invocations running their code at once (default 10). An
    /// invocation that waits for durable effects does not hold a slot.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// How long a claim lasts without renewal (default 5 minutes).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How often leases are renewed (default: half the lease duration).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = Some(d);
        self
    }

    /// Shortest wait between polls when idle (default 1 s). The same name
    /// as the executor's option for its waiters
    /// ([`StentBuilder::poll_min_interval`](crate::StentBuilder::poll_min_interval)).
    pub fn poll_min_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Longest wait between polls when idle (default: the executor's
    /// `poll_max_interval`).
    pub fn poll_max_interval(mut self, d: Duration) -> Self {
        self.poll_interval_max = Some(d);
        self
    }

    /// [`poll_min_interval`](Self::poll_min_interval) under the seed API's
    /// name for the worker (`worker(poll_interval=…)`).
    pub fn poll_interval(self, d: Duration) -> Self {
        self.poll_min_interval(d)
    }

    /// [`poll_max_interval`](Self::poll_max_interval) under the seed API's
    /// name for the worker (`worker(poll_interval_max=…)`).
    pub fn poll_interval_max(self, d: Duration) -> Self {
        self.poll_max_interval(d)
    }

    /// Growth factor of the idle poll interval (default: the executor's).
    pub fn poll_backoff_factor(mut self, f: f64) -> Self {
        self.poll_backoff_factor = Some(f);
        self
    }

    /// Timers due within this long keep the workflow resident instead of
    /// parking it (default 2 s).
    pub fn sticky_timer(mut self, d: Duration) -> Self {
        self.sticky_timer = d;
        self
    }

    /// How often this worker deletes old finished executions (default
    /// hourly; `None`: never).
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> Self {
        self.cleanup_interval = every;
        self
    }

    /// How long finished executions are kept before cleanup deletes them,
    /// whole (default 7 days).
    pub fn retention_period(mut self, keep: Duration) -> Self {
        self.retention_period = keep;
        self
    }

    /// Coordinate readiness and shutdown through this handle.
    pub fn lifecycle(mut self, lifecycle: WorkerLifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Runs the worker until its lifecycle is drained.
    pub async fn serve(self) -> Result<()> {
        let inner = self.stent.inner.clone();
        let lifecycle = self.lifecycle.unwrap_or_else(|| WorkerLifecycle::new(None));
        let poll = PollSettings {
            min: self.poll_interval,
            max: self
                .poll_interval_max
                .unwrap_or(inner.poll.max)
                .max(self.poll_interval),
            factor: self.poll_backoff_factor.unwrap_or(inner.poll.factor),
        };
        if self.lease_duration < Duration::from_millis(10) {
            return Err(Error::InvalidConfig(
                "lease_duration must be at least 10 ms".into(),
            ));
        }
        let heartbeat = self
            .heartbeat_interval
            .unwrap_or(self.lease_duration / 2)
            .max(Duration::from_millis(1));
        if heartbeat >= self.lease_duration {
            // Leases would run out between renewals: every invocation would
            // be taken over (and its step re-run) while it is still running.
            return Err(Error::InvalidConfig(format!(
                "heartbeat_interval ({heartbeat:?}) must be shorter than lease_duration ({:?}); \
                 a third of the lease is a good choice",
                self.lease_duration
            )));
        }
        let worker_id = self
            .worker_id
            .unwrap_or_else(|| format!("worker-{}", &ExecutionId::new_random().to_string()[..8]));
        let (drain_tx, drain_rx) = watch::channel(false);
        let concurrency_limits = inner.registry.concurrency_limits();
        let started = inner.clock.now();
        let core = Arc::new(Core {
            concurrency_limits,
            functions: inner.registry.served_names(),
            inner,
            id: WorkerId::new(worker_id),
            queues: self.queues,
            tags: self.tags,
            also_runs: self.also_runs,
            lease: self.lease_duration,
            poll,
            sticky_timer: self.sticky_timer,
            slots: Arc::new(Semaphore::new(self.max_concurrency)),
            slot_freed: Notify::new(),
            leases: Mutex::new(HashMap::new()),
            sticky: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            next_due: Mutex::new(None),
            // Leases taken from now on run out no earlier than this.
            renewed_until: Mutex::new(Some(started.saturating_add(self.lease_duration))),
            lapsed: Mutex::new(Vec::new()),
            started_at: started,
            heartbeat,
            warned: Mutex::new(HashSet::new()),
            drain: drain_rx,
        });
        let heartbeat_task = tokio::spawn(core.clone().heartbeat_loop(heartbeat));
        let cleanup_task = self
            .cleanup_interval
            .map(|every| tokio::spawn(core.clone().cleanup_loop(every, self.retention_period)));
        let registration = core.inner.hub.add_local_worker(core.clone());
        core.announce().await;
        lifecycle.set(LifecycleState::Ready);
        core.clone().claim_loop(lifecycle.drain_requested()).await;
        lifecycle.set(LifecycleState::Draining);
        drain_tx.send_replace(true);
        core.inner.hub.remove_local_worker(registration);
        core.wait_idle().await;
        heartbeat_task.abort();
        core.retire().await;
        if let Some(task) = cleanup_task {
            task.abort();
        }
        lifecycle.set(LifecycleState::Stopped);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stent_memory::MemoryBackend;

    use crate::Stent;

    #[test]
    fn the_seed_names_of_the_poll_options_set_the_same_options() {
        let stent = Stent::new(MemoryBackend::new());
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(3));
        let named = stent.worker().poll_min_interval(min).poll_max_interval(max);
        let seed = stent.worker().poll_interval(min).poll_interval_max(max);
        assert_eq!(named.poll_interval, min);
        assert_eq!(named.poll_interval_max, Some(max));
        assert_eq!(seed.poll_interval, named.poll_interval);
        assert_eq!(seed.poll_interval_max, named.poll_interval_max);
    }
}
