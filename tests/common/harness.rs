//! Starting and stopping in-process workers in tests.

use stent::{Stent, WorkerLifecycle};
use tokio::task::JoinHandle;

/// A worker running in this process.
pub struct TestWorker {
    lifecycle: WorkerLifecycle,
    handle: JoinHandle<stent::Result<()>>,
}

impl TestWorker {
    /// Starts a worker with default settings and waits until it is ready.
    pub async fn start(executor: &Stent) -> TestWorker {
        Self::start_with(executor, |w| w).await
    }

    /// Starts a worker configured by `configure`.
    pub async fn start_with(
        executor: &Stent,
        configure: impl FnOnce(stent::WorkerBuilder) -> stent::WorkerBuilder,
    ) -> TestWorker {
        let lifecycle = executor.create_worker_lifecycle(None);
        let handle =
            tokio::spawn(configure(executor.worker().lifecycle(lifecycle.clone())).serve());
        lifecycle.wait_until_ready().await;
        TestWorker { lifecycle, handle }
    }

    /// True if the worker's `serve` returned (it stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Drains the worker and waits until it stopped.
    pub async fn stop(self) {
        self.lifecycle.request_drain();
        self.handle
            .await
            .expect("worker task panicked")
            .expect("worker failed");
    }
}
