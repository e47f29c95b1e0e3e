//! A call of a durable function, before it runs: what `my_fn(a, b)` returns.
//!
//! Awaited inside a durable execution, the call is journaled: it takes the
//! next seq at the moment it is awaited (or handed to `Stent::gather`), is
//! run as a child invocation, and is answered from the journal on replay.
//! Awaited anywhere else, it simply runs the body (unit-test mode).

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use stent_journal::Failure;
use stent_replay::{Command, Context, Effect, Resolution};

use crate::registry::{BoxFuture, DurableFn};

/// A call of the durable function `D` with its arguments.
#[must_use = "a durable call does nothing until it is `.await`ed (or handed to `Stent::gather`): the step never runs"]
pub struct Call<D: DurableFn> {
    pub(crate) args: D::Args,
    _def: PhantomData<fn() -> D>,
}

impl<D: DurableFn> Call<D> {
    /// A call with these arguments (the `#[durable]` function does this for you).
    pub fn new(args: D::Args) -> Self {
        Self {
            args,
            _def: PhantomData,
        }
    }

    /// The registered name of the function called.
    pub fn function_name(&self) -> &'static str {
        D::NAME
    }

    /// The arguments.
    pub fn args(&self) -> &D::Args {
        &self.args
    }
}

impl<D: DurableFn> std::fmt::Debug for Call<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("function", &D::NAME).finish()
    }
}

/// The future of an awaited [`Call`].
#[must_use = "a durable call does nothing until it is `.await`ed: the step never runs"]
pub struct CallFuture<D: DurableFn> {
    state: CallState<D>,
}

enum CallState<D: DurableFn> {
    Journaled(Context, Effect),
    Direct(BoxFuture<Result<D::Output, D::Error>>),
    /// The engine was told to stop the invocation; never resolves.
    Stopped,
}

impl<D: DurableFn> IntoFuture for Call<D> {
    type Output = Result<D::Output, D::Error>;
    type IntoFuture = CallFuture<D>;

    fn into_future(self) -> CallFuture<D> {
        let Some(ctx) = Context::current() else {
            return CallFuture {
                state: CallState::Direct(D::run(self.args)),
            };
        };
        let args = ctx
            .serializer()
            .encode(&self.args)
            .and_then(|p| p.check(ctx.value_limits()).map(|()| p));
        let state = match args {
            Ok(args) => {
                let version = D::options().version;
                let effect = ctx.schedule(Command::call(D::NAME, version, args));
                CallState::Journaled(ctx, effect)
            }
            Err(e) => {
                ctx.abort(format!(
                    "arguments of a call to {} cannot be stored: {e}",
                    D::NAME
                ));
                CallState::Stopped
            }
        };
        CallFuture { state }
    }
}

impl<D: DurableFn> Future for CallFuture<D> {
    type Output = Result<D::Output, D::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.state {
            CallState::Direct(fut) => fut.as_mut().poll(cx),
            CallState::Stopped => Poll::Pending,
            CallState::Journaled(ctx, effect) => {
                let resolution = std::task::ready!(Pin::new(effect).poll(cx));
                let ctx = ctx.clone();
                match decode_resolution::<D>(resolution) {
                    Ok(out) => Poll::Ready(out),
                    Err(message) => {
                        ctx.abort(message);
                        this.state = CallState::Stopped;
                        Poll::Pending
                    }
                }
            }
        }
    }
}

fn decode_resolution<D: DurableFn>(
    resolution: Resolution,
) -> Result<Result<D::Output, D::Error>, String> {
    match resolution {
        Resolution::Value(v) => v.decode().map(Ok).map_err(|e| {
            format!(
                "the recorded result of {} does not decode as the type the code expects: {e}",
                D::NAME
            )
        }),
        Resolution::Failed(Failure::Error { error }) => error.decode().map(Err).map_err(|e| {
            format!(
                "the recorded error of {} does not decode as the type the code expects: {e}",
                D::NAME
            )
        }),
        Resolution::Failed(other) => Err(format!("call to {} failed: {other}", D::NAME)),
        Resolution::Done => Err(format!(
            "call to {} was answered by a non-value event",
            D::NAME
        )),
    }
}

/// Implemented for every `#[durable]` function item, so it can be passed by
/// name: `registry.register(process_item)`.
pub trait IntoDefinition<Marker> {
    /// The function's definition type.
    type Def: DurableFn;
}

macro_rules! into_definition {
    ($($arg:ident),*) => {
        impl<F, D, $($arg,)*> IntoDefinition<(D, $($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Call<D>,
            D: DurableFn,
        {
            type Def = D;
        }
    };
}

into_definition!();
into_definition!(A1);
into_definition!(A1, A2);
into_definition!(A1, A2, A3);
into_definition!(A1, A2, A3, A4);
into_definition!(A1, A2, A3, A4, A5);
into_definition!(A1, A2, A3, A4, A5, A6);
into_definition!(A1, A2, A3, A4, A5, A6, A7);
into_definition!(A1, A2, A3, A4, A5, A6, A7, A8);
