//! Compensation on cancellation: `Stent::on_cancel(call)` registers a call
//! (journaled as a `ContextWrite::OnCancel`), and cancelling the execution
//! starts one new execution of the built-in [`RunCompensations`] that runs
//! the registered calls newest first, each as an ordinary journaled child
//! with its own retry policy.
//!
//! Cancellation itself stays final and immediate (the body stops at its next
//! durable point); the compensation is a separate execution, so a crash
//! while compensating resumes it like any other workflow and never runs a
//! completed compensation twice.

use serde::{Deserialize, Serialize};
use stent_journal::event::{ContextWrite, Event};
use stent_journal::store::{ExecutionRecord, ExecutionStatus};
use stent_journal::{EventKind, ExecutionId, Failure, InvocationId, Payload, Seq};
use stent_replay::{Command, Context, Resolution};

use crate::call::Call;
use crate::error::Result;
use crate::executor::Stent;
use crate::registry::{BoxFuture, DurableFn, DurableOptions};

/// One registered compensation: a call by name, with encoded arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationCall {
    /// The function to call.
    pub function: String,
    /// Its version.
    pub version: Option<String>,
    /// Its encoded arguments.
    pub args: Payload,
}

/// What a compensation execution did: returned as its result (every
/// compensation succeeded) or its error (some failed after their retries;
/// the others still ran).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationReport {
    /// The cancelled execution.
    pub cancelled: ExecutionId,
    /// The functions that ran to success, in the order they ran.
    pub completed: Vec<String>,
    /// The functions that failed, with the reason, in the order they ran.
    pub failed: Vec<(String, String)>,
}

/// The longest reason [`Stent::cancel_with_reason`] records: a sentence or
/// a ticket reference, not a document.
const MAX_REASON_BYTES: usize = 4096;

/// The dispatch key of the execution running `cancelled`'s compensations.
fn compensation_key(cancelled: ExecutionId) -> String {
    format!("stent:compensations-of:{cancelled}")
}

/// What [`Stent::cancel_execution`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cancellation {
    /// False if the execution had already ended (nothing was done).
    pub cancelled: bool,
    /// The execution running the compensations registered with
    /// [`Stent::on_cancel`], if there were any. Cancelling an execution
    /// that is already cancelled gives the same one, and starts it if an
    /// earlier cancel failed before it could (a lost connection): a
    /// cancel is safe to retry, and compensations start once.
    pub compensation: Option<ExecutionId>,
}

/// The built-in durable function that runs registered compensations in
/// order. Every registry serves it; you never call it yourself.
#[derive(Debug)]
pub struct RunCompensations;

impl DurableFn for RunCompensations {
    type Args = (ExecutionId, Vec<CompensationCall>);
    type Output = CompensationReport;
    type Error = CompensationReport;
    const NAME: &'static str = "stent::compensation::run_compensations";

    fn options() -> DurableOptions<Self::Args> {
        DurableOptions::new()
    }

    fn run(
        (cancelled, calls): Self::Args,
    ) -> BoxFuture<std::result::Result<Self::Output, Self::Error>> {
        Box::pin(async move {
            let mut report = CompensationReport {
                cancelled,
                completed: Vec::new(),
                failed: Vec::new(),
            };
            let Some(ctx) = Context::current() else {
                report.failed.extend(calls.into_iter().map(|c| {
                    (
                        c.function,
                        "compensations run only inside an execution".to_string(),
                    )
                }));
                return Err(report);
            };
            for call in calls {
                let effect = ctx.schedule(Command::call(
                    &call.function,
                    call.version.as_deref(),
                    call.args,
                ));
                match effect.await {
                    Resolution::Value(_) => report.completed.push(call.function),
                    Resolution::Failed(Failure::Error { error }) => {
                        // The error as its JSON text: `"no seats"`, or
                        // `{"code": 7}` for a structured one.
                        let reason = error
                            .to_json()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .unwrap_or_else(|e| e.to_string());
                        report.failed.push((call.function, reason));
                    }
                    Resolution::Failed(other) => {
                        report.failed.push((call.function, other.to_string()))
                    }
                    Resolution::Done => report
                        .failed
                        .push((call.function, "answered by a non-value event".into())),
                }
            }
            if report.failed.is_empty() {
                Ok(report)
            } else {
                Err(report)
            }
        })
    }
}

impl Stent {
    /// Registers `call` to run if this execution is cancelled before it
    /// ends: the saga's undo step. Registrations are journaled; cancelling
    /// the execution ([`Stent::cancel`]) starts one new execution that runs
    /// every registered call, newest first, each as a durable call with its
    /// own retry policy. An execution that ends any other way runs none of
    /// them (a workflow compensates its own failures in its code).
    ///
    /// Register *before* the step it undoes, with a compensation that
    /// tolerates finding nothing to undo: a cancellation can arrive while the
    /// step runs, and then only a registration made before it is seen.
    ///
    /// [`Error::NoContext`](crate::Error::NoContext) outside a running execution; an encoding error if
    /// the arguments do not encode.
    ///
    /// ```no_run
    /// #[stent::durable]
    /// async fn book_flight(trip: String) -> Result<String, String> {
    ///     Ok(format!("FL-{trip}"))
    /// }
    ///
    /// #[stent::durable]
    /// async fn cancel_flight(trip: String) -> Result<(), String> {
    ///     Ok(()) // a no-op when nothing was booked for `trip`
    /// }
    ///
    /// #[stent::durable]
    /// async fn trip(trip: String) -> Result<String, String> {
    ///     stent::Stent::on_cancel(cancel_flight(trip.clone())).map_err(|e| e.to_string())?;
    ///     book_flight(trip).await
    /// }
    /// ```
    pub fn on_cancel<D: DurableFn>(call: Call<D>) -> Result<()> {
        let ctx = Context::try_current()?;
        let args = ctx.serializer().encode(call.args())?;
        args.check(ctx.value_limits())?;
        crate::context::write_in(
            &ctx,
            ContextWrite::OnCancel {
                function: D::NAME.to_string(),
                version: D::options().version.map(str::to_string),
                args,
            },
        )
    }

    /// Cancels an execution like [`Stent::cancel`] and reports whether it
    /// was running and which execution runs its compensations.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// let outcome = executor.cancel_execution(id).await?;
    /// if let Some(undo) = outcome.compensation {
    ///     let report = executor
    ///         .wait_for::<stent::CompensationReport, stent::CompensationReport>(undo, None)
    ///         .await?;
    ///     println!("{report:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cancel_execution(&self, id: ExecutionId) -> Result<Cancellation> {
        self.cancel_ending(id, None).await
    }

    /// Cancels an execution like [`Stent::cancel_execution`], recording
    /// why (or by whom): the `cancelled` event that ends its root journal
    /// carries `reason`, and `stent show`, `stent journal` and
    /// [`ExecutionState::interruption`](crate::ExecutionState::interruption)
    /// show it. A reason longer than 4 KiB is refused with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument), and nothing is
    /// cancelled.
    ///
    /// ```no_run
    /// # async fn demo(executor: stent::Stent, id: stent::ExecutionId) -> Result<(), stent::Error> {
    /// executor
    ///     .cancel_with_reason(id, "customer withdrew the order (ticket 4411)")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_with_reason(
        &self,
        id: ExecutionId,
        reason: impl Into<String>,
    ) -> Result<Cancellation> {
        let reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            return Err(crate::Error::InvalidArgument(format!(
                "a cancellation reason is at most {MAX_REASON_BYTES} bytes; this one has {} (execution {id} was not cancelled)",
                reason.len()
            )));
        }
        self.cancel_ending(id, Some(reason)).await
    }

    async fn cancel_ending(&self, id: ExecutionId, reason: Option<String>) -> Result<Cancellation> {
        let cancelled = self.end_cancelled(id, reason).await?;
        // Already ended: if cancelled, by an earlier call that may have
        // failed (storage went away) before it started the compensations;
        // they start now. The compensations' execution has an id derived
        // from the cancelled one, so a dispatch of it that finds it there
        // starts nothing: they never start twice.
        let known = match cancelled {
            true => None,
            false => match self.inner.backend.execution(id).await? {
                Some(record) if record.status == ExecutionStatus::Cancelled => Some(record),
                _ => {
                    return Ok(Cancellation {
                        cancelled,
                        compensation: None,
                    });
                }
            },
        };
        Ok(Cancellation {
            cancelled,
            compensation: self.start_compensations(id, known).await?,
        })
    }

    /// Starts the execution running the compensations registered in `id`
    /// (cancelled; `known`, its record if already read), or finds it
    /// started; its id, `None` if none were registered.
    async fn start_compensations(
        &self,
        id: ExecutionId,
        known: Option<ExecutionRecord>,
    ) -> Result<Option<ExecutionId>> {
        let calls = self.registered_compensations(id).await?;
        if calls.is_empty() {
            return Ok(None);
        }
        let record = match known {
            Some(record) => Some(record),
            None => self.inner.backend.execution(id).await?,
        };
        let mut dispatch = self
            .dispatch(Call::<RunCompensations>::new((id, calls)))
            .tags(["stent:compensation".to_string()])
            .key(compensation_key(id));
        if let Some(record) = record {
            dispatch = dispatch.queue(record.routing.queue);
        }
        Ok(Some(dispatch.await?))
    }

    /// The `on_cancel` registrations of every invocation of `id`, newest
    /// first (by the time they were recorded, then by invocation and seq).
    async fn registered_compensations(&self, id: ExecutionId) -> Result<Vec<CompensationCall>> {
        let journals = self
            .inner
            .backend
            .read_execution_journal(id, Some(&[EventKind::ContextWrite]))
            .await?;
        let mut found: Vec<(
            stent_journal::Timestamp,
            InvocationId,
            Seq,
            CompensationCall,
        )> = Vec::new();
        for (invocation, rows) in journals {
            for row in rows {
                let event = Event::decode(&row.bytes)?;
                if let Event::ContextWrite {
                    write:
                        ContextWrite::OnCancel {
                            function,
                            version,
                            args,
                        },
                } = event
                {
                    found.push((
                        row.recorded_at,
                        invocation,
                        row.seq,
                        CompensationCall {
                            function,
                            version,
                            args,
                        },
                    ));
                }
            }
        }
        found.sort_by_key(|(at, invocation, seq, _)| std::cmp::Reverse((*at, *invocation, *seq)));
        Ok(found.into_iter().map(|(.., call)| call).collect())
    }
}
