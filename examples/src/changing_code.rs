//! Changing code under executions in flight: a shop ships v2 of its
//! `fulfil` workflow while orders started on v1 still wait to be packed.
//!
//! - v1 books a truck, waits for the signal `packed`, ships.
//! - v2 flies express orders: the new branch sits behind
//!   `Stent::patched("air-freight")`, so the orders v1 started (their
//!   journals hold the truck booking) replay the old branch and still go by
//!   road, while every order started on v2 flies.
//! - Before shipping v2, the deploy check replays the orders in flight
//!   against it: v2 as written with the patch is safe; the same change
//!   made without the patch would pause every order v1 started.
//!
//! Both versions are compiled into this crate under one registered name, as
//! two builds of one service would be.
//!
//! ```sh
//! cargo run -p stent-examples --example changing_code
//! ```

use std::time::Duration;

use stent::debugger::DeployCheck;
use stent::definition::{BoxFuture, DurableFn, DurableOptions};
use stent::journal::store::Backend;
use stent::{Call, ExecutionId, FunctionRegistry, Stent};

use crate::support::LocalWorker;

/// Which build of the shop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Trucks only.
    V1,
    /// Air freight behind a patch.
    V2,
    /// Air freight without a patch: the change as first written, which the
    /// deploy check refuses.
    V2Unpatched,
}

/// Books a truck for an order.
#[stent::durable]
pub async fn book_truck(order: u64) -> Result<String, String> {
    Ok(format!("truck T-{order}"))
}

/// Books a flight for an order.
#[stent::durable]
pub async fn book_flight(order: u64) -> Result<String, String> {
    Ok(format!("flight F-{order}"))
}

/// Hands the parcel to the carrier.
#[stent::durable]
pub async fn ship(order: u64, carrier: String) -> Result<String, String> {
    Ok(format!("order {order} shipped by {carrier}"))
}

/// `fulfil` as v1, v2 and the unpatched v2 write it, one registered name.
macro_rules! build {
    ($(#[$doc:meta])* $def:ident, |$order:ident| $carrier:block) => {
        $(#[$doc])*
        pub struct $def;

        impl DurableFn for $def {
            type Args = (u64,);
            type Output = String;
            type Error = String;
            const NAME: &'static str = "stent_examples::changing_code::fulfil";

            fn options() -> DurableOptions<Self::Args> {
                DurableOptions::new()
            }

            fn run(args: Self::Args) -> BoxFuture<Result<String, String>> {
                let ($order,) = args;
                Box::pin(async move {
                    let carrier: String = $carrier;
                    let packed: String = Stent::wait_for_signal("packed")
                        .await
                        .map_err(|e| e.to_string())?;
                    let shipped = ship($order, carrier).await?;
                    Ok(format!("{shipped}, {packed}"))
                })
            }
        }
    };
}

build!(
    /// v1: every order goes by truck.
    FulfilV1,
    |order| { book_truck(order).await? }
);

build!(
    /// v2: express orders fly; orders v1 started keep their truck.
    FulfilV2,
    |order| {
        if Stent::patched("air-freight").map_err(|e| e.to_string())? {
            book_flight(order).await?
        } else {
            book_truck(order).await?
        }
    }
);

build!(
    /// v2 without the patch: what the deploy check catches.
    FulfilV2Unpatched,
    |order| { book_flight(order).await? }
);

/// The functions of `build`.
pub fn registry(build: Build) -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register(book_truck).register(book_flight).register(ship);
    match build {
        Build::V1 => r.register_def::<FulfilV1>(),
        Build::V2 => r.register_def::<FulfilV2>(),
        Build::V2Unpatched => r.register_def::<FulfilV2Unpatched>(),
    };
    r
}

/// An executor of `build` over `backend`.
pub fn deployment<B: Backend + Clone>(backend: &B, build: Build) -> Stent {
    Stent::builder(backend.clone())
        .function_registry(registry(build))
        .build()
}

/// What the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How the orders started on v1 ended.
    pub started_on_v1: Vec<String>,
    /// How the orders started on v2 ended.
    pub started_on_v2: Vec<String>,
    /// Executions the deploy check said the unpatched v2 would pause.
    pub unpatched_would_pause: usize,
    /// Executions the deploy check replayed against v2.
    pub checked_against_v2: usize,
}

/// Waits until execution `id` waits for its signal.
async fn until_waiting(executor: &Stent, id: ExecutionId) -> crate::Result<()> {
    for _ in 0..2_000 {
        let state = executor.state_of(id).await?;
        if !state.waits.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("execution {id} never waited for its signal").into())
}

/// Runs the story on `backend`: orders `first..first + 2` start on v1,
/// the deploy check vets v2, order `first + 2` starts on v2, and all three
/// finish on v2.
pub async fn run<B: Backend + Clone>(backend: &B, first: u64) -> crate::Result<Outcome> {
    // v1 runs; two orders start and wait to be packed.
    let v1 = deployment(backend, Build::V1);
    let worker = LocalWorker::start(&v1, |w| w).await;
    let mut old = Vec::new();
    for order in first..first + 2 {
        let id = v1.dispatch(Call::<FulfilV1>::new((order,))).await?;
        until_waiting(&v1, id).await?;
        println!("v1: order {order} ({id}) booked a truck, waits to be packed");
        old.push(id);
    }
    worker.stop().await?;

    // Before the deploy: replay what is in flight against the new builds.
    let unpatched = DeployCheck::new()
        .run(&deployment(backend, Build::V2Unpatched))
        .await?;
    println!("deploy check of v2 without a patch: {unpatched}");
    let patched = DeployCheck::new()
        .run(&deployment(backend, Build::V2))
        .await?;
    println!("deploy check of v2 with the patch: {patched}");
    if !patched.is_safe() {
        return Err(format!("v2 would pause executions: {patched}").into());
    }

    // v2 is deployed: a new order flies, the old ones keep their truck.
    let v2 = deployment(backend, Build::V2);
    let worker = LocalWorker::start(&v2, |w| w).await;
    let new = v2.dispatch(Call::<FulfilV2>::new((first + 2,))).await?;
    until_waiting(&v2, new).await?;
    let mut started_on_v1 = Vec::new();
    for &id in &old {
        v2.send_signal(id, "packed", &"packed by ada").await?;
        let done = v2
            .wait_for::<String, String>(id, Some(Duration::from_secs(30)))
            .await??;
        println!("v2 finished {id}, started on v1: {done}");
        started_on_v1.push(done);
    }
    v2.send_signal(new, "packed", &"packed by bob").await?;
    let done = v2
        .wait_for::<String, String>(new, Some(Duration::from_secs(30)))
        .await??;
    println!("v2 finished {new}, started on v2: {done}");
    worker.stop().await?;
    Ok(Outcome {
        started_on_v1,
        started_on_v2: vec![done],
        unpatched_would_pause: unpatched.would_pause.len(),
        checked_against_v2: patched.checked,
    })
}
