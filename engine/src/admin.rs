//! Operating on executions: cancellation and dead letters.

use stent_journal::event::{Event, ParentLink};
use stent_journal::store::{
    CleanupCounts, DeadLetterRecord, Delivery, ExecutionOutcome, ExecutionStatus, StoreError,
    StoreStats, TaskFilter, TaskRecord,
};
use stent_journal::{ExecutionId, Failure, InvocationId, Seq};

use crate::error::{Error, Result};
use crate::executor::Stent;

/// The tasks [`Stent::list_tasks`] lists when the filter's `limit` is 0.
pub const DEFAULT_TASK_PAGE: usize = 100;

impl Stent {
    /// Cancels an execution for good: it never turns `completed`; its
    /// invocations stop at their next durable point (those resident in this
    /// process at once, others when their lease renewal is refused) and
    /// none of its tasks is claimed again. False if it had already ended.
    ///
    /// Calls registered with [`Stent::on_cancel`] then run, newest first, in
    /// a new execution; [`Stent::cancel_execution`] tells which.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// if executor.cancel(id).await? {
    ///     println!("cancelled");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, id: ExecutionId) -> Result<bool> {
        Ok(self.cancel_execution(id).await?.cancelled)
    }

    /// Ends `id` as cancelled and stops its resident invocations; false if it
    /// had already ended.
    pub(crate) async fn end_cancelled(
        &self,
        id: ExecutionId,
        reason: Option<String>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let terminal = Event::Cancelled { reason }.encode()?;
        let ended = match inner
            .backend
            .end_execution(id, ExecutionStatus::Cancelled, terminal, inner.clock.now())
            .await
        {
            Err(StoreError::NotFound(_)) => return Err(Error::NotFound(id)),
            other => other?,
        };
        inner.hub.stop_execution(id);
        inner.hub.execution_finished(id);
        Ok(ended)
    }

    /// Dead letters, newest first: invocations suspended after running out
    /// of attempts without a result (a panic, or a worker dying each time).
    pub async fn list_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetterRecord>> {
        Ok(self.inner.backend.list_dead_letters(limit).await?)
    }

    /// One dead letter.
    pub async fn get_dead_letter(&self, task: InvocationId) -> Result<Option<DeadLetterRecord>> {
        Ok(self.inner.backend.get_dead_letter(task).await?)
    }

    /// Runs a dead-lettered invocation again, from where it stopped: its
    /// journal is kept, so completed calls are not repeated. Optionally in
    /// another queue; `reset_retries` gives it its full retry budget again.
    /// Returns the task id (the invocation's).
    pub async fn replay_dead_letter(
        &self,
        task: InvocationId,
        queue: Option<&str>,
        reset_retries: bool,
    ) -> Result<InvocationId> {
        let replayed = self
            .inner
            .backend
            .replay_dead_letter(task, queue, reset_retries, self.inner.clock.now())
            .await?;
        if !replayed {
            return Err(Error::DeadLetterNotFound(task));
        }
        self.inner.hub.work.notify_waiters();
        Ok(task)
    }

    /// Gives up on a dead-lettered invocation: its caller receives a failure
    /// (which, having no typed error to offer, fails the caller too), or, for
    /// a root, the execution fails. False if there was no such dead letter.
    pub async fn discard_dead_letter(&self, task: InvocationId) -> Result<bool> {
        let inner = &self.inner;
        let Some(record) = inner.backend.get_dead_letter(task).await? else {
            return Ok(false);
        };
        let rows = inner.backend.read_journal(task, Seq(0)).await?;
        let parent = match rows.first().map(|r| Event::decode(&r.bytes)).transpose()? {
            Some(Event::Started { parent, .. }) => parent,
            _ => {
                return Err(Error::Backend(StoreError::Corrupt(format!(
                    "invocation {task} has no started event"
                ))));
            }
        };
        let failure = Failure::Aborted {
            message: format!("dead letter discarded: {}", record.reason),
        };
        let (deliver, execution) = match parent {
            Some(ParentLink { invocation, seq }) => (
                Some(Delivery {
                    parent: invocation,
                    event: Event::CallFailed {
                        scheduled: seq,
                        failure,
                    }
                    .encode()?,
                }),
                None,
            ),
            None => (
                None,
                Some(ExecutionOutcome {
                    status: ExecutionStatus::Failed,
                    terminal_event: Event::Failed { failure }.encode()?,
                }),
            ),
        };
        let root = execution.is_some();
        let discarded = inner
            .backend
            .discard_dead_letter(task, deliver, execution, inner.clock.now())
            .await?;
        if discarded {
            inner.hub.work.notify_waiters();
            if root {
                inner.hub.execution_finished(record.execution);
            }
        }
        Ok(discarded)
    }

    /// A page of tasks (rows of the work queue) in creation order: state,
    /// lease holder and expiry, attempts and retries. Filter by execution,
    /// state or queue.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// use stent::journal::store::TaskFilter;
    /// let filter = TaskFilter::default().execution(id).limit(50);
    /// for task in executor.list_tasks(filter).await? {
    ///     println!("{} {} {}", task.invocation, task.function, task.state);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A `limit` of 0 (as in `TaskFilter::default()`) lists a page of
    /// [`DEFAULT_TASK_PAGE`] tasks.
    pub async fn list_tasks(&self, mut filter: TaskFilter) -> Result<Vec<TaskRecord>> {
        if filter.limit == 0 {
            filter.limit = DEFAULT_TASK_PAGE;
        }
        Ok(self.inner.backend.list_tasks(filter).await?)
    }

    /// One task, by its invocation id.
    pub async fn task(&self, invocation: InvocationId) -> Result<Option<TaskRecord>> {
        Ok(self.inner.backend.task(invocation).await?)
    }

    /// The failed attempts of a task that were retried, oldest first, each
    /// with its number, time and error (the last
    /// [`ATTEMPT_FAILURES_KEPT`](crate::journal::store::ATTEMPT_FAILURES_KEPT)
    /// of them). The attempt that ends a call for good is in the journal
    /// (`call_failed`) or its dead letter instead.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, task: stent::InvocationId) -> Result<(), stent::Error> {
    /// for f in executor.task_failures(task).await? {
    ///     println!("attempt {} failed at {}: {}", f.attempt, f.at.to_datetime(), f.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn task_failures(
        &self,
        invocation: InvocationId,
    ) -> Result<Vec<crate::journal::store::AttemptFailure>> {
        Ok(self.inner.backend.task_failures(invocation).await?)
    }

    /// Counts over the whole store: executions per state, tasks per state,
    /// work per queue (ready, due now, leased, waiting) and dead letters.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent) -> Result<(), stent::Error> {
    /// let stats = executor.stats().await?;
    /// for q in &stats.queues {
    ///     println!("{}: {} ready, {} running", q.queue, q.ready, q.leased);
    /// }
    /// println!("dead letters: {}", stats.dead_letters);
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<StoreStats> {
        Ok(self.inner.backend.stats(self.inner.clock.now()).await?)
    }

    /// Deletes executions that ended more than `older_than` ago, with their
    /// tasks, journals, signals and dead letters; with `dry_run` only counts
    /// what would go. What a worker's cleanup loop does, on demand.
    pub async fn cleanup(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> Result<CleanupCounts> {
        let now = self.inner.clock.now();
        let ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let before = stent_journal::Timestamp(now.0.saturating_sub(ms));
        Ok(self.inner.backend.cleanup(before, dry_run).await?)
    }

    /// Waits (a few seconds at most) until the notifications this executor
    /// published — a dispatch, a signal, a cancellation — have been handed
    /// to its [`NotificationBackend`](crate::notifications::NotificationBackend).
    /// A short-lived process calls it before exiting, so workers in other
    /// processes are woken now rather than at their next poll.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// executor.send_signal(id, "approval", &true).await?;
    /// executor.flush_notifications().await; // then exit
    /// # Ok(()) }
    /// ```
    pub async fn flush_notifications(&self) {
        self.inner.hub.flush().await;
    }
}
