//! `Stent::map` and `Stent::starmap`: one durable function over many inputs.
//!
//! Every call is scheduled when `map` is called, in input order, so all of
//! them are stored in the same turn — one transaction for the whole batch —
//! and replays number them alike. Results come back in input order.

use std::future::IntoFuture;

use futures_util::future::{JoinAll, TryJoinAll, join_all, try_join_all};

use crate::call::{Call, CallFuture};
use crate::executor::Stent;
use crate::registry::DurableFn;

/// A durable function that can be applied to a tuple of its arguments.
pub trait ApplyArgs<Args> {
    /// The function's definition.
    type Def: DurableFn;
    /// The call for these arguments.
    fn apply(&self, args: Args) -> Call<Self::Def>;
}

macro_rules! apply_args {
    ($($arg:ident),+) => {
        impl<F, D, $($arg,)+> ApplyArgs<($($arg,)+)> for F
        where
            F: Fn($($arg),+) -> Call<D>,
            D: DurableFn,
        {
            type Def = D;
            #[allow(non_snake_case)]
            fn apply(&self, ($($arg,)+): ($($arg,)+)) -> Call<D> {
                self($($arg),+)
            }
        }
    };
}

apply_args!(A1);
apply_args!(A1, A2);
apply_args!(A1, A2, A3);
apply_args!(A1, A2, A3, A4);
apply_args!(A1, A2, A3, A4, A5);
apply_args!(A1, A2, A3, A4, A5, A6);

impl Stent {
    /// Calls `function` once per item, in parallel, and returns the results
    /// in input order; stops at the first error (the seed's `map`). All calls
    /// are scheduled now and stored together.
    ///
    /// ```no_run
    /// # use stent::Stent;
    /// #[stent::durable]
    /// async fn process_item(id: u64) -> Result<u64, String> { Ok(id * 2) }
    ///
    /// #[stent::durable]
    /// async fn batch(ids: Vec<u64>) -> Result<Vec<u64>, String> {
    ///     Stent::map(process_item, ids).await
    /// }
    /// ```
    pub fn map<F, I, D>(function: F, items: I) -> TryJoinAll<CallFuture<D>>
    where
        F: Fn(I::Item) -> Call<D>,
        I: IntoIterator,
        D: DurableFn,
    {
        try_join_all(items.into_iter().map(|x| function(x).into_future()))
    }

    /// Like [`Stent::map`], but returns every outcome, errors included.
    pub fn map_all<F, I, D>(function: F, items: I) -> JoinAll<CallFuture<D>>
    where
        F: Fn(I::Item) -> Call<D>,
        I: IntoIterator,
        D: DurableFn,
    {
        join_all(items.into_iter().map(|x| function(x).into_future()))
    }

    /// [`Stent::map`] for functions of several arguments: each item is a
    /// tuple of arguments (Python's `starmap`).
    ///
    /// ```no_run
    /// # use stent::Stent;
    /// #[stent::durable]
    /// async fn add(a: i64, b: i64) -> Result<i64, String> { Ok(a + b) }
    ///
    /// #[stent::durable]
    /// async fn sums() -> Result<Vec<i64>, String> {
    ///     Stent::starmap(add, [(1, 2), (3, 4)]).await
    /// }
    /// ```
    pub fn starmap<F, I>(function: F, items: I) -> TryJoinAll<CallFuture<F::Def>>
    where
        I: IntoIterator,
        F: ApplyArgs<I::Item>,
    {
        try_join_all(
            items
                .into_iter()
                .map(|args| function.apply(args).into_future()),
        )
    }
}
