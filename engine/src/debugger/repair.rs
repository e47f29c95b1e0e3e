//! The repair path after a fix: resume a paused execution, or fork a new
//! execution from a recorded prefix.

use std::collections::HashSet;
use std::time::Duration;

use stent_journal::event::{Event, ForkOrigin, ParentLink};
use stent_journal::store::{
    DatabaseError, DatabaseErrorKind, ExecutionStatus, LeaseGrant, NewEvent, NewExecution,
    NewInvocation, Routing, StoreError, TaskDisposition, TurnCommit,
};
use stent_journal::{ExecutionId, InvocationId, LeaseEpoch, Seq, WorkerId};

use crate::error::{Error, Result};
use crate::executor::Stent;

/// How long the fork holds the new root's lease while it writes the
/// prefix: for good, since a fork whose prefix is not stored must never
/// run. Storing the prefix releases it.
const FORK_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Attempts at storing the prefix, and the first wait between two.
const FORK_ATTEMPTS: u32 = 5;
const FORK_RETRY_FIRST: Duration = Duration::from_millis(100);

impl Stent {
    /// Re-queues an execution paused by non-determinism, once its code is
    /// fixed: every paused task of it becomes runnable now and the execution
    /// `running` again (its pause report is cleared). A worker then replays
    /// its journal against the code it runs; if the code still diverges, the
    /// execution pauses again with a new report.
    ///
    /// [`Error::NotFound`] for an unknown execution; [`Error::InvalidState`]
    /// if it is not paused.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// let state = executor.state_of(id).await?;
    /// if let Some(report) = &state.pause_report {
    ///     eprintln!("paused: {report}");
    ///     // …deploy the fixed code, then:
    ///     executor.resume(id).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, id: ExecutionId) -> Result<()> {
        let inner = &self.inner;
        let record = inner
            .backend
            .execution(id)
            .await?
            .ok_or(Error::NotFound(id))?;
        if record.status != ExecutionStatus::Paused {
            return Err(not_paused(id, record.status));
        }
        if !inner
            .backend
            .resume_execution(id, inner.clock.now())
            .await?
        {
            // Resumed (or ended) by someone else meanwhile.
            let status = inner
                .backend
                .execution(id)
                .await?
                .map(|r| r.status)
                .unwrap_or(ExecutionStatus::Running);
            return Err(not_paused(id, status));
        }
        inner.hub.work.notify_waiters();
        Ok(())
    }

    /// Starts a new execution whose root journal is the recorded prefix of
    /// execution `id` before seq `at` (seqs `0..at`); from `at` on, the root
    /// runs on today's code. Calls made in the prefix keep their recorded
    /// results; calls made in the prefix that had no result yet run again as
    /// children of the new execution. The original execution is left as it
    /// is. The new execution takes the original's routing (queue, priority,
    /// tags) and has no deadline; signals for it go to its new id.
    ///
    /// The repair path after a fix: fork a failed (or paused) execution at
    /// the seq of the first step the fix changes, and everything before it
    /// is not done again.
    ///
    /// [`Error::NotFound`] for an unknown execution; [`Error::InvalidArgument`]
    /// if `at` is 0 or past the last non-terminal event of the root journal.
    ///
    /// Storage faults: the new execution is created with its root leased to
    /// the fork, and only the write of the kept prefix releases it, so a
    /// fork whose prefix is not stored never runs (it would redo the kept
    /// calls). That write is tried again a few times; a write whose reply
    /// was lost counts as done. If it cannot be stored, the error names the
    /// new execution, which is cancelled if storage allows it and otherwise
    /// stays held; fork again.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// // Keep seqs 0..3 (say, the first call and its result), redo the rest.
    /// let new_id = executor.fork(id, stent::journal::Seq(3)).await?;
    /// println!("forked as {new_id}");
    /// # Ok(()) }
    /// ```
    pub async fn fork(&self, id: ExecutionId, at: Seq) -> Result<ExecutionId> {
        let inner = &self.inner;
        let record = inner
            .backend
            .execution(id)
            .await?
            .ok_or(Error::NotFound(id))?;
        let old_root = id.root_invocation();
        let rows = inner.backend.read_journal(old_root, Seq(0)).await?;
        let mut events = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.seq.0 as usize != i {
                return Err(Error::Backend(StoreError::Corrupt(format!(
                    "journal of invocation {old_root} has a gap: expected seq {i}, found {}",
                    row.seq
                ))));
            }
            events.push(Event::decode(&row.bytes).map_err(|e| {
                Error::Backend(StoreError::Corrupt(format!(
                    "journal of invocation {old_root}, seq {}: {e}",
                    row.seq
                )))
            })?);
        }
        let effects = events
            .iter()
            .position(|e| e.kind().is_terminal())
            .unwrap_or(events.len());
        if at.0 == 0 || at.0 as usize > effects {
            return Err(Error::InvalidArgument(format!(
                "cannot fork execution {id} at seq {at}: the fork keeps seqs 0..at of the root \
                 journal, so `at` must be between 1 and {effects} (the root journal has {} events{})",
                events.len(),
                if effects < events.len() {
                    format!(", its result at seq {effects}")
                } else {
                    String::new()
                }
            )));
        }
        let mut prefix = events[..at.0 as usize].to_vec();
        // The new root remembers where it came from (a fork of a fork
        // names its nearest origin, whose own root names the next).
        if let Some(Event::Started { forked_from, .. }) = prefix.first_mut() {
            *forked_from = Some(ForkOrigin { execution: id, at });
        }
        let new_id = ExecutionId::new_random();
        let root = new_id.root_invocation();
        let now = inner.clock.now();
        let resolved: HashSet<Seq> = prefix.iter().filter_map(Event::resolves).collect();
        let mut spawn = Vec::new();
        for (i, event) in prefix.iter_mut().enumerate() {
            let seq = Seq(i as u32);
            if let Event::CallScheduled {
                function,
                version,
                args,
                child,
                ..
            } = event
            {
                *child = InvocationId::child_of(root, seq);
                if !resolved.contains(&seq) {
                    let started = Event::Started {
                        function: function.clone(),
                        version: version.clone(),
                        args: args.clone(),
                        parent: Some(ParentLink {
                            invocation: root,
                            seq,
                        }),
                        forked_from: None,
                    };
                    spawn.push(NewInvocation {
                        invocation: *child,
                        execution: new_id,
                        function: function.clone(),
                        routing: inner
                            .registry
                            .get(function)
                            .map(|e| e.routing.clone())
                            .unwrap_or_else(|_| Routing::default()),
                        run_at: now,
                        started_event: started.encode()?,
                        lease: None,
                    });
                }
            }
        }
        let mut new_events = Vec::with_capacity(prefix.len());
        for (i, event) in prefix.iter().enumerate().skip(1) {
            new_events.push(NewEvent {
                seq: Seq(i as u32),
                kind: event.kind(),
                call_key: event.call_key(),
                bytes: event.encode()?,
            });
        }
        let fork_worker = WorkerId::new(format!("stent-fork-of-{id}"));
        inner
            .backend
            .create_execution(NewExecution {
                id: new_id,
                function: record.function.clone(),
                created_at: now,
                deadline: None,
                // The fork runs on today's code: this executor's version.
                code_version: inner.code_version.clone(),
                root: NewInvocation {
                    invocation: root,
                    execution: new_id,
                    function: record.function.clone(),
                    routing: record.routing.clone(),
                    run_at: now,
                    started_event: prefix[0].encode()?,
                    lease: Some(LeaseGrant {
                        worker: fork_worker,
                        until: now.saturating_add(FORK_LEASE),
                    }),
                },
            })
            .await
            .map_err(|e| {
                tracing::warn!(%id, fork = %new_id, error = %e, "creating the fork failed; if it landed, its root stays leased to the fork and it never runs");
                e
            })?;
        let commit = TurnCommit {
            events: new_events,
            spawn,
            ..TurnCommit::bare(
                root,
                LeaseEpoch(1),
                now,
                TaskDisposition::Park { run_at: Some(now) },
            )
        };
        // The prefix is written with the root's lease held for good: a fork
        // whose prefix is not stored must never run (it would run its kept
        // steps again, from scratch). A failed write is tried again; one
        // refused for the lease after a failure is one whose reply was
        // lost: it landed and released the lease.
        let mut delay = FORK_RETRY_FIRST;
        let mut failed = None;
        for attempt in 1..=FORK_ATTEMPTS {
            match inner.backend.commit(vec![commit.clone()]).await {
                Ok(()) => {
                    failed = None;
                    break;
                }
                Err(StoreError::LeaseLost { .. }) if failed.is_some() => {
                    failed = None;
                    break;
                }
                // Refused at once: not a lost reply; nothing to try again.
                Err(e @ StoreError::LeaseLost { .. }) => {
                    failed = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::warn!(%id, fork = %new_id, attempt, error = %e, "writing the fork's prefix failed; trying again");
                    failed = Some(e);
                }
            }
            if attempt < FORK_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        if let Some(e) = failed {
            let state = if cancel_unwritten_fork(self, id, new_id, &e).await {
                "it was cancelled"
            } else {
                "it never runs (its root stays leased to the fork); cancel it when storage is back"
            };
            return Err(Error::Backend(StoreError::Database(
                DatabaseError::new(format!(
                    "forking execution {id}: the new execution {new_id} was created but its \
                     journal could not be written, so {state}; fork again: {e}"
                ))
                .with_kind(match &e {
                    StoreError::Database(db) => db.kind(),
                    _ => DatabaseErrorKind::Other,
                }),
            )));
        }
        inner.hub.work.notify_waiters();
        Ok(new_id)
    }
}

/// Cancels `fork`, a fork of `id` whose prefix could not be stored
/// (`why`), so it does not look like work in progress. Held for good by the
/// fork, it never runs either way. True if it was cancelled.
async fn cancel_unwritten_fork(
    stent: &Stent,
    id: ExecutionId,
    fork: ExecutionId,
    why: &StoreError,
) -> bool {
    let cancelled = Event::Cancelled {
        reason: Some(format!(
            "the fork of execution {id} could not be written: {why}"
        )),
    };
    let Ok(cancelled) = cancelled.encode() else {
        return false;
    };
    let now = stent.inner.clock.now();
    match stent
        .inner
        .backend
        .end_execution(fork, ExecutionStatus::Cancelled, cancelled, now)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(%id, %fork, error = %e, "could not cancel the unwritten fork; it stays held and never runs");
            false
        }
    }
}

fn not_paused(id: ExecutionId, status: ExecutionStatus) -> Error {
    Error::InvalidState(format!(
        "execution {id} is {status}, not paused: only an execution paused by non-determinism can be resumed (to run a finished one again from an earlier point, fork it)"
    ))
}
