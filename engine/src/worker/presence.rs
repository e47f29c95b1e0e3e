//! A worker's presence in storage: it announces what it serves at start
//! and with every heartbeat, and retires when it stops, so operators and
//! other processes can tell a call that no live worker serves (which would
//! otherwise wait forever, silently). It also warns, once per function,
//! when a call it schedules has no live worker to run it.

use std::time::Duration;

use stent_journal::Timestamp;
use stent_journal::store::{Routing, WorkerRecord};

use super::Core;

/// How many heartbeats a worker stays presumed alive after announcing
/// itself without another announcement.
const HEARTBEATS_OF_GRACE: u32 = 3;

impl Core {
    /// This worker's announcement, at `now`.
    fn record(&self, now: Timestamp) -> WorkerRecord {
        let grace = (self.heartbeat * HEARTBEATS_OF_GRACE).max(Duration::from_secs(5));
        WorkerRecord {
            id: self.id.clone(),
            functions: self.functions.clone(),
            queues: self.queues.clone(),
            tags: self.tags.clone(),
            started_at: self.started_at,
            seen_at: now,
            expires_at: now.saturating_add(grace),
        }
    }

    /// Tells storage this worker is alive and what it serves. A failure is
    /// logged and tried again at the next heartbeat.
    pub(super) async fn announce(&self) {
        let record = self.record(self.now());
        if let Err(e) = self.inner.backend.announce_worker(&record).await {
            tracing::warn!(worker = %self.id, error = %e, "could not announce the worker");
        }
    }

    /// Tells storage this worker has stopped.
    pub(super) async fn retire(&self) {
        if let Err(e) = self.inner.backend.retire_worker(&self.id).await {
            tracing::warn!(worker = %self.id, error = %e, "could not retire the worker");
        }
    }

    /// Warns, once per function, if no live worker serves calls of
    /// `function` routed by `routing` (this one does not: it did not take
    /// the call itself). Runs off the turn, on a task of its own.
    pub(super) fn check_served(&self, function: &str, routing: &Routing) {
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if !warned.insert(function.to_string()) {
                return;
            }
        }
        let backend = self.inner.backend.clone();
        let now = self.now();
        let (function, routing, id) = (function.to_string(), routing.clone(), self.id.clone());
        tokio::spawn(async move {
            match backend.workers().await {
                Ok(workers) if !workers.iter().any(|w| w.serves(&function, &routing, now)) => {
                    tracing::warn!(
                        worker = %id,
                        function,
                        queue = routing.queue,
                        "no live worker serves `{function}` in queue `{}`: its calls wait until one does (register it with a worker that claims that queue)",
                        routing.queue
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(worker = %id, error = %e, "could not read the workers")
                }
            }
        });
    }
}
