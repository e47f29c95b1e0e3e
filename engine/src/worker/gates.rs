//! Gates before a body runs: answers from the result cache for calls of
//! `cached` functions, and the idempotency key an `idempotent` function
//! takes (or waits for, or is answered from) before its body runs.

use std::sync::Arc;

use stent_journal::event::Event;
use stent_journal::store::{IdempotencyBegin, TaskDisposition, TurnCommit};
use stent_journal::{CallKey, Failure, Payload};

use super::{Core, Gate, Running, TurnError};

impl Core {
    /// Answers calls of `cached` functions scheduled in this turn from the
    /// cache. True if any was answered (the code can go on).
    pub(super) async fn answer_from_cache(&self, r: &mut Running) -> Result<bool, TurnError> {
        let mut answered = false;
        for (seq, function, key) in r.driver.pending_new_calls() {
            if r.cache_checked.contains(&seq) {
                continue;
            }
            r.cache_checked.insert(seq);
            if !self.inner.registry.get(&function).is_ok_and(|e| e.cached) {
                continue;
            }
            if let Some(value) = self.inner.backend.cache_get(key).await? {
                answered |= r.driver.answer_from_cache(seq, Payload::from_bytes(value));
            }
        }
        Ok(answered)
    }

    /// Takes (or finds) the idempotency key of an `idempotent` invocation
    /// before its body runs.
    pub(super) async fn idempotency_gate(
        self: &Arc<Self>,
        r: &mut Running,
    ) -> Result<Gate, TurnError> {
        let Some(key_of) = r.entry.as_ref().and_then(|e| e.idempotency_key) else {
            return Ok(Gate::Run);
        };
        let Event::Started {
            function,
            version,
            args,
            ..
        } = r.driver.started_event()
        else {
            return Ok(Gate::Run);
        };
        let key = match key_of(&function, version.as_deref(), &args) {
            Ok(k) => k,
            Err(e) => {
                self.finish(
                    r,
                    &Err(Failure::Aborted {
                        message: format!("idempotency key of {function}: {e}"),
                    }),
                    true,
                )
                .await?;
                return Ok(Gate::Done);
            }
        };
        match self
            .inner
            .backend
            .begin_idempotent(&key, r.invocation)
            .await?
        {
            IdempotencyBegin::Owner => {
                r.driver.set_idempotency_key(key.clone());
                r.idempotency_key = Some(key);
                Ok(Gate::Run)
            }
            IdempotencyBegin::Done(value) => {
                // Ran before, in this or another execution: the same result,
                // without running the body again.
                self.finish(r, &Ok(Payload::from_bytes(value)), true)
                    .await?;
                Ok(Gate::Done)
            }
            IdempotencyBegin::Running { owner } => {
                tracing::debug!(invocation = %r.invocation, %owner, %key, "waiting for the first run of an idempotent call");
                let now = self.now();
                let commit = TurnCommit::bare(
                    r.invocation,
                    r.epoch,
                    now,
                    TaskDisposition::Park {
                        run_at: Some(now.saturating_add(self.poll.min)),
                    },
                );
                self.inner.backend.commit(vec![commit]).await?;
                self.inner.hub.work.notify_waiters();
                Ok(Gate::Done)
            }
        }
    }
}

/// The call key of an invocation, from its `Started` event.
pub(super) fn call_key_of(started: &Event) -> Option<CallKey> {
    match started {
        Event::Started {
            function,
            version,
            args,
            ..
        } => Some(CallKey::new(function, version.as_deref(), args)),
        _ => None,
    }
}
