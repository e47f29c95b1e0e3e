//! The ambient workflow API: `Stent::sleep`, `Stent::wait_for_signal`,
//! `Stent::gather`. They find the running invocation through the replay
//! context, so workflow code needs no context argument.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use futures_util::future::{JoinAll, TryJoinAll, join_all, try_join_all};
use serde::de::DeserializeOwned;
use stent_journal::IntoDuration;
use stent_replay::{Command, Context, Effect, Resolution, SignalCheck};

use crate::error::{Error, Result};
use crate::executor::Stent;

/// What a wait for a signal of type `T` expects of its payload: a signal
/// that does not decode into `T` is set aside before it is journaled, and
/// the execution paused with a report, instead of failing the workflow.
fn signal_check<T: DeserializeOwned>() -> SignalCheck {
    SignalCheck {
        type_name: std::any::type_name::<T>(),
        check: |payload| payload.decode::<T>().map(drop).map_err(|e| e.to_string()),
    }
}

/// The future of [`Stent::sleep`].
#[must_use = "a durable sleep does nothing until it is `.await`ed"]
pub struct Sleep {
    inner: std::result::Result<Effect, Option<Error>>,
}

impl Future for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        match &mut self.inner {
            Ok(effect) => Pin::new(effect).poll(cx).map(|_| Ok(())),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| {
                Error::InvalidState("Sleep polled after it finished".into())
            }))),
        }
    }
}

/// The future of [`Stent::wait_for_signal`].
#[must_use = "a signal wait does nothing until it is `.await`ed"]
pub struct SignalWait<T> {
    inner: std::result::Result<Effect, Option<Error>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Future for SignalWait<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<T>> {
        match &mut self.inner {
            Ok(effect) => Pin::new(effect).poll(cx).map(|r| match r {
                Resolution::Value(p) => p.decode().map_err(Error::from),
                other => Err(Error::JournalMismatch(format!(
                    "signal wait answered by {other:?}"
                ))),
            }),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| {
                Error::InvalidState("SignalWait polled after it finished".into())
            }))),
        }
    }
}

/// The future of [`Stent::wait_for_signal_timeout`].
#[must_use = "a signal wait does nothing until it is `.await`ed"]
pub struct SignalTimeout<T> {
    #[allow(clippy::type_complexity)]
    inner: std::result::Result<(Option<Effect>, Option<Effect>), Option<Error>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Future for SignalTimeout<T> {
    type Output = Result<Option<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<Option<T>>> {
        let (signal, timer) = match &mut self.inner {
            Ok(pair) => pair,
            Err(e) => {
                return Poll::Ready(Err(e.take().unwrap_or_else(|| {
                    Error::InvalidState("SignalTimeout polled after it finished".into())
                })));
            }
        };
        if let Some(s) = signal.as_mut()
            && let Poll::Ready(r) = Pin::new(s).poll(cx)
        {
            // Stop waiting for the timer at once (dropping it), in code order.
            *timer = None;
            *signal = None;
            return Poll::Ready(match r {
                Resolution::Value(p) => p.decode().map(Some).map_err(Error::from),
                other => Err(Error::JournalMismatch(format!(
                    "signal wait answered by {other:?}"
                ))),
            });
        }
        if let Some(t) = timer.as_mut()
            && Pin::new(t).poll(cx).is_ready()
        {
            // The signal wait is dropped: a late signal stays for a later wait.
            *signal = None;
            *timer = None;
            return Poll::Ready(Ok(None));
        }
        Poll::Pending
    }
}

impl Stent {
    /// Sleeps durably: the worker slot is freed, and the sleep survives
    /// restarts (it ends at the time recorded when it began).
    ///
    /// The seq is taken when `sleep` is called, not when it is first polled.
    /// Outside a running execution the returned future fails with
    /// [`Error::NoContext`]; a malformed duration fails with
    /// [`Error::InvalidDuration`].
    pub fn sleep(duration: impl IntoDuration) -> Sleep {
        let inner = (|| {
            let duration = duration.into_duration()?;
            let ctx = Context::try_current()?;
            Ok(ctx.schedule(Command::Timer { duration }))
        })()
        .map_err(Some);
        Sleep { inner }
    }

    /// Waits for the signal `name` sent with [`Stent::send_signal`]. A signal
    /// sent before the wait is kept; several signals of one name are delivered
    /// once each, in the order they were sent.
    pub fn wait_for_signal<T: DeserializeOwned>(name: &str) -> SignalWait<T> {
        let inner = Context::try_current()
            .map(|ctx| {
                let effect = ctx.schedule(Command::Signal {
                    name: name.to_string(),
                });
                ctx.expect_signal(&effect, signal_check::<T>());
                effect
            })
            .map_err(|e| Some(e.into()));
        SignalWait {
            inner,
            _t: PhantomData,
        }
    }

    /// The idempotency key of the running `idempotent` function, to hand to
    /// an external system (a payment provider's idempotency header, say).
    /// `None` in a function that is not `idempotent`; `Error::NoContext`
    /// outside an execution.
    ///
    /// ```no_run
    /// # use stent::Stent;
    /// #[stent::durable(idempotent)]
    /// async fn charge(customer: String, cents: u64) -> Result<String, String> {
    ///     let key = Stent::idempotency_key().map_err(|e| e.to_string())?;
    ///     Ok(format!("charged {customer} {cents} with key {key:?}"))
    /// }
    /// ```
    pub fn idempotency_key() -> Result<Option<String>> {
        Ok(Context::try_current()?.idempotency_key())
    }

    /// Waits for the signal `name` for at most `timeout` (a durable timer):
    /// `Ok(Some(payload))` if it came in time, `Ok(None)` if the time ran
    /// out. A signal arriving after the timeout is kept for a later wait.
    ///
    /// ```no_run
    /// # use stent::Stent;
    /// #[stent::durable]
    /// async fn approval() -> Result<String, String> {
    ///     let answer: Option<bool> = Stent::wait_for_signal_timeout("approve", "48h")
    ///         .await
    ///         .map_err(|e| e.to_string())?;
    ///     Ok(match answer {
    ///         Some(true) => "approved",
    ///         Some(false) => "rejected",
    ///         None => "expired",
    ///     }
    ///     .to_string())
    /// }
    /// ```
    pub fn wait_for_signal_timeout<T: DeserializeOwned>(
        name: &str,
        timeout: impl IntoDuration,
    ) -> SignalTimeout<T> {
        let inner = (|| {
            let timeout = timeout.into_duration()?;
            let ctx = Context::try_current()?;
            let signal = ctx.schedule(Command::Signal {
                name: name.to_string(),
            });
            ctx.expect_signal(&signal, signal_check::<T>());
            let timer = ctx.schedule(Command::Timer { duration: timeout });
            Ok((Some(signal), Some(timer)))
        })()
        .map_err(Some);
        SignalTimeout {
            inner,
            _t: PhantomData,
        }
    }

    /// Runs several calls in parallel and returns every outcome, in input
    /// order (the seed's `gather(..., return_exceptions=True)`). Each call
    /// takes its seq now, in iteration order, so replays number them alike.
    pub fn gather<I>(calls: I) -> JoinAll<<I::Item as IntoFuture>::IntoFuture>
    where
        I: IntoIterator,
        I::Item: IntoFuture,
    {
        join_all(calls.into_iter().map(IntoFuture::into_future))
    }

    /// Like [`Stent::gather`], but stops at the first error (the seed's default
    /// `gather`). Calls already scheduled keep running to completion.
    pub fn try_gather<I, T, E>(calls: I) -> TryJoinAll<<I::Item as IntoFuture>::IntoFuture>
    where
        I: IntoIterator,
        I::Item: IntoFuture<Output = std::result::Result<T, E>>,
    {
        try_join_all(calls.into_iter().map(IntoFuture::into_future))
    }
}
