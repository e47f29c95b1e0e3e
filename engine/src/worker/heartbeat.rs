//! Leases and heartbeat: renewing every lease this worker holds, noticing
//! and reporting leases found gone while the worker was alive (so a
//! takeover does not count as a crash), and the periodic cleanup.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stent_journal::store::{ClaimedTask, JournalRow};
use stent_journal::{InvocationId, LeaseEpoch, Timestamp};

use super::Core;

impl Core {
    /// Claimed tasks whose leases ran out before the claim returned (a
    /// stalled store or host): renewed at once, so the claim is not taken
    /// over again right away (which would count towards the crash-loop
    /// limit); those already taken over are dropped.
    pub(super) async fn renew_if_late(
        &self,
        tasks: Vec<(ClaimedTask, Option<Vec<JournalRow>>)>,
        lease_until: Timestamp,
    ) -> Vec<(ClaimedTask, Option<Vec<JournalRow>>)> {
        let now = self.now();
        if tasks.is_empty() || now < lease_until {
            return tasks;
        }
        let held: Vec<(InvocationId, LeaseEpoch)> =
            tasks.iter().map(|(t, _)| (t.invocation, t.epoch)).collect();
        match self
            .inner
            .backend
            .renew_leases(&self.id, &held, now, now.saturating_add(self.lease))
            .await
        {
            Ok(lost) => tasks
                .into_iter()
                .filter(|(t, _)| {
                    let taken = lost.contains(&t.invocation);
                    if taken {
                        tracing::warn!(invocation = %t.invocation, "claimed lease ran out and was taken over before the claim returned");
                        self.lease_gone(t.invocation, t.epoch);
                    }
                    !taken
                })
                .collect(),
            // Run them on the claimed leases: their writes are fenced.
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not renew late claims");
                tasks
            }
        }
    }

    pub(super) async fn heartbeat_loop(self: Arc<Self>, every: Duration) {
        let mut late = false;
        loop {
            // A renewal that returned after its new expiry (a stalled store
            // or host) is repeated at once.
            if !late {
                tokio::time::sleep(every).await;
            }
            late = self.renew_held().await;
            self.report_lapsed().await;
            self.announce().await;
        }
    }

    /// Remembers that this worker, alive, found its lease on `invocation`
    /// at `epoch` gone; [`Core::report_lapsed`] tells the store.
    pub(super) fn lease_gone(&self, invocation: InvocationId, epoch: LeaseEpoch) {
        self.lapsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((invocation, epoch));
    }

    /// Reports the leases found gone: if the store, the network or this
    /// worker was away long enough for a lease to lapse and be taken over,
    /// that takeover followed no crash and must not count towards the
    /// crash-loop limit (it would dead-letter healthy tasks after a few
    /// database restarts). Kept for the next heartbeat if the store fails.
    pub(super) async fn report_lapsed(&self) {
        let lapsed = std::mem::take(&mut *self.lapsed.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, (invocation, epoch)) in lapsed.iter().enumerate() {
            if let Err(e) = self
                .inner
                .backend
                .forgive_takeover(*invocation, *epoch)
                .await
            {
                tracing::warn!(worker = %self.id, error = %e, "could not report lapsed leases; will again");
                self.lapsed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&lapsed[i..]);
                return;
            }
        }
    }

    /// Renews every lease this worker holds. True if the renewal came back
    /// after the expiry it set (so the leases may have lapsed meanwhile).
    pub(super) async fn renew_held(&self) -> bool {
        let held: Vec<(InvocationId, LeaseEpoch)> = self
            .lock_leases()
            .iter()
            .map(|(i, l)| (*i, l.epoch))
            .collect();
        if held.is_empty() {
            return false;
        }
        let now = self.now();
        let until = now.saturating_add(self.lease);
        match self
            .inner
            .backend
            .renew_leases(&self.id, &held, now, until)
            .await
        {
            Ok(lost) => {
                for inv in lost {
                    if let Some(l) = self.lock_leases().get(&inv) {
                        tracing::warn!(worker = %self.id, invocation = %inv, "lease lost");
                        l.lost.store(true, Ordering::SeqCst);
                    }
                    if let Some((_, epoch)) = held.iter().find(|(i, _)| *i == inv) {
                        self.lease_gone(inv, *epoch);
                    }
                    self.inner.hub.wake_invocation(inv);
                }
                let late = self.now() >= until;
                if !late {
                    *self.lock_renewed() = Some(until);
                }
                late
            }
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "lease renewal failed");
                false
            }
        }
    }

    /// True if the leases renewed last may have run out: the heartbeat fell
    /// behind (a stalled store or host, a jump of the clock).
    pub(super) fn leases_may_have_lapsed(&self) -> bool {
        self.lock_renewed().is_some_and(|until| self.now() >= until)
    }

    pub(super) fn lock_renewed(&self) -> std::sync::MutexGuard<'_, Option<Timestamp>> {
        self.renewed_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn cleanup_loop(self: Arc<Self>, every: Duration, retention: Duration) {
        loop {
            tokio::time::sleep(every.max(Duration::from_millis(1))).await;
            let before = Timestamp(
                self.now()
                    .millis()
                    .saturating_sub(retention.as_millis() as i64),
            );
            match self.inner.backend.cleanup(before, false).await {
                Ok(n) if n.executions > 0 => {
                    tracing::info!(worker = %self.id, executions = n.executions, tasks = n.tasks, events = n.events, "cleaned up finished executions");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "cleanup failed"),
            }
        }
    }
}
