//! Group commit: concurrent calls of one kind (commits, creates, reads of an
//! execution) are gathered and sent as one statement.
//!
//! A [`Batcher`] has a few slots, each running one batch at a time. A call
//! joins the queue; a free slot takes everything queued (up to a maximum)
//! and runs it as one batch. Nothing waits for a batch to fill: a call that
//! finds a slot free runs at once, alone, so batching costs no latency when
//! the database keeps up, and grows exactly when calls pile up behind busy
//! slots. Under load this turns a round trip, a transaction and a WAL flush
//! per call into one per batch.
//!
//! A batch runs on a task of its own: a caller that stops waiting gets no
//! answer, but the batch still ends as a whole. A call that finds a slot
//! free and nothing queued is started on its task by the caller, without
//! the hop through the batcher's queue and task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Calls queued for a batch, each with where its answer goes.
type Queue<I, O> = mpsc::UnboundedSender<(I, oneshot::Sender<O>)>;

/// What runs one batch.
type Run<I, O> = Arc<dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync>;

/// Runs calls of one kind in batches; see the module docs.
pub(crate) struct Batcher<I, O> {
    queue: Queue<I, O>,
    counts: Arc<Counts>,
    run: Run<I, O>,
    slots: Arc<Semaphore>,
    /// Calls sent to the queue and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

/// Calls and batches run so far.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    batches: AtomicU64,
}

/// How many calls of one kind went through group commit, in how many
/// batches (statements). See [`PostgresBackend::group_commit_stats`].
///
/// [`PostgresBackend::group_commit_stats`]: crate::PostgresBackend::group_commit_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Calls answered.
    pub calls: u64,
    /// Batches run for them: `calls / batches` is the average batch size.
    pub batches: u64,
}

/// Why a call did not go through the batcher.
pub(crate) enum Unbatched<I> {
    /// The batcher is gone (the runtime that ran it shut down): the call is
    /// given back to run on its own.
    Gone(I),
    /// The batch task stopped before answering (its runtime shut down
    /// mid-batch): the outcome is unknown.
    Lost,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher's task on the current tokio runtime. `run` gets
    /// the calls of a batch, in arrival order, and returns one answer per
    /// call, in the same order.
    pub(crate) fn start<F, Fut>(slots: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (queue, mut calls) = mpsc::unbounded_channel::<(I, oneshot::Sender<O>)>();
        let run: Run<I, O> = Arc::new(move |items| Box::pin(run(items)));
        let slots = Arc::new(Semaphore::new(slots.max(1)));
        let max_batch = max_batch.max(1);
        let counts = Arc::new(Counts::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let (loop_run, loop_slots, loop_counts, taken) =
            (run.clone(), slots.clone(), counts.clone(), queued.clone());
        tokio::spawn(async move {
            loop {
                // A slot first, then the calls: whatever queued up while
                // every slot was busy goes into this batch.
                let Ok(slot) = loop_slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = calls.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match calls.try_recv() {
                        Ok(call) => batch.push(call),
                        Err(_) => break,
                    }
                }
                taken.fetch_sub(batch.len(), Ordering::AcqRel);
                launch(&loop_run, &loop_counts, batch, slot);
            }
        });
        Batcher {
            queue,
            counts,
            run,
            slots,
            queued,
        }
    }

    /// Calls and batches so far.
    pub(crate) fn counts(&self) -> BatchCounts {
        BatchCounts {
            calls: self.counts.calls.load(Ordering::Relaxed),
            batches: self.counts.batches.load(Ordering::Relaxed),
        }
    }

    /// Runs `item` in the next batch and returns its answer.
    pub(crate) async fn call(&self, item: I) -> Result<O, Unbatched<I>> {
        let (answer, outcome) = oneshot::channel();
        // Nothing queued ahead and a slot free: a batch of one, started
        // here on a task of its own.
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            launch(&self.run, &self.counts, vec![(item, answer)], slot);
            return outcome.await.map_err(|_| Unbatched::Lost);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((item, _))) = self.queue.send((item, answer)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Unbatched::Gone(item));
        }
        outcome.await.map_err(|_| Unbatched::Lost)
    }
}

/// Runs `batch` on a task of its own, holding `slot` until it ends, and
/// sends each call its answer.
fn launch<I: Send + 'static, O: Send + 'static>(
    run: &Run<I, O>,
    counts: &Counts,
    batch: Vec<(I, oneshot::Sender<O>)>,
    slot: OwnedSemaphorePermit,
) {
    counts.batches.fetch_add(1, Ordering::Relaxed);
    counts
        .calls
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let (items, answers): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
    let outcomes = run(items);
    tokio::spawn(async move {
        for (answer, outcome) in answers.into_iter().zip(outcomes.await) {
            let _ = answer.send(outcome);
        }
        drop(slot);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_that_queue_behind_a_busy_slot_run_as_one_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(1, 100, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        }));
        // The first call takes the only slot; the next nine queue behind it.
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(1).await.ok() })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let rest: Vec<_> = (2..=10)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(i).await.ok() })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(10));
        for (i, call) in (2..=10).zip(rest) {
            assert_eq!(call.await.unwrap(), Some(i * 10));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 9]);
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_its_maximum() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(1, 4, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move { items }
        }));
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(i).await.ok() })
            })
            .collect();
        for (i, call) in (0..10).zip(calls) {
            assert_eq!(call.await.unwrap(), Some(i));
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 10);
    }

    #[test]
    fn a_batcher_whose_runtime_is_gone_gives_the_call_back() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let batcher = runtime
            .block_on(async { Batcher::start(1, 4, |items: Vec<u32>| async move { items }) });
        drop(runtime);
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Its slot is free again, and nothing is queued: the call runs
        // alone, on a task of this runtime.
        assert!(matches!(other.block_on(batcher.call(7)), Ok(7)));
        // With no slot free it would queue, and the queue is gone.
        let _busy = batcher.slots.clone().try_acquire_owned().unwrap();
        let outcome = other.block_on(batcher.call(8));
        assert!(matches!(outcome, Err(Unbatched::Gone(8))));
    }

    #[tokio::test]
    async fn a_lone_call_with_a_slot_free_runs_at_once_as_a_batch_of_one() {
        let batcher = Batcher::start(2, 4, |items: Vec<u32>| async move {
            items.into_iter().map(|i| i + 1).collect()
        });
        for i in 0..3 {
            assert!(matches!(batcher.call(i).await, Ok(n) if n == i + 1));
        }
        assert_eq!(
            batcher.counts(),
            BatchCounts {
                calls: 3,
                batches: 3
            }
        );
    }
}
