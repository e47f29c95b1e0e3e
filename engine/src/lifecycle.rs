//! [`WorkerLifecycle`]: readiness and graceful shutdown of a worker, the
//! seed's `starting → ready → draining → stopped`.

use std::sync::Arc;

use tokio::sync::watch;

/// A worker's lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LifecycleState {
    /// `serve` was called and is setting up.
    Starting,
    /// Claiming and running work.
    Ready,
    /// Claims no new work; finishing what it holds.
    Draining,
    /// `serve` returned.
    Stopped,
}

/// A handle to coordinate with a running worker: wait until it is ready,
/// ask it to drain, wait until it stopped. Cheap to clone.
///
/// ```no_run
/// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
/// let lifecycle = executor.create_worker_lifecycle(Some("worker-1"));
/// let worker = tokio::spawn(executor.worker().lifecycle(lifecycle.clone()).serve());
/// lifecycle.wait_until_ready().await;
/// // ...
/// executor.request_worker_drain(&lifecycle);
/// lifecycle.wait_until_stopped().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WorkerLifecycle {
    name: Option<Arc<str>>,
    state: Arc<watch::Sender<LifecycleState>>,
    drain: Arc<watch::Sender<bool>>,
}

impl WorkerLifecycle {
    /// A new handle, in state `Starting`.
    pub fn new(name: Option<&str>) -> Self {
        Self {
            name: name.map(Arc::from),
            state: Arc::new(watch::channel(LifecycleState::Starting).0),
            drain: Arc::new(watch::channel(false).0),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The current phase.
    pub fn state(&self) -> LifecycleState {
        *self.state.borrow()
    }

    /// Waits until the worker is ready (or already past it).
    pub async fn wait_until_ready(&self) {
        self.wait_for(LifecycleState::Ready).await
    }

    /// Waits until the worker has stopped.
    pub async fn wait_until_stopped(&self) {
        self.wait_for(LifecycleState::Stopped).await
    }

    async fn wait_for(&self, at_least: LifecycleState) {
        let mut rx = self.state.subscribe();
        // The sender lives in self, so the channel cannot close while we wait.
        let _ = rx.wait_for(|s| *s >= at_least).await;
    }

    /// Asks the worker to stop claiming work, finish what it holds, and stop.
    pub fn request_drain(&self) {
        self.drain.send_replace(true);
    }

    pub(crate) fn set(&self, state: LifecycleState) {
        self.state.send_if_modified(|s| {
            if *s < state {
                *s = state;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn drain_requested(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }
}

impl crate::Stent {
    /// A lifecycle handle to pass to [`crate::WorkerBuilder::lifecycle`].
    pub fn create_worker_lifecycle(&self, name: Option<&str>) -> WorkerLifecycle {
        WorkerLifecycle::new(name)
    }

    /// Asks the worker holding `lifecycle` to drain.
    pub fn request_worker_drain(&self, lifecycle: &WorkerLifecycle) {
        lifecycle.request_drain();
    }
}
