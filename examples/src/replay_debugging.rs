//! Replay debugging: a shop whose code changed after some executions ran.
//!
//! Two workflows, each in two versions compiled into this crate under one
//! registered name — the code that recorded the journals, and the code of
//! the next deployment:
//!
//! - `checkout` reserves the items of an order, charges it and ships it.
//!   The changed code adds a plum and raises the price, so replaying an old
//!   journal against it diverges at the reservation (`args[0].items[2].qty`)
//!   and at the charge (`args[1]`).
//! - `report` loads a source and divides its total. The recorded code
//!   divides by zero and fails; the changed code is the fix, onto which a
//!   failed execution is forked (the load is kept, not redone).
//!
//! `stent-replay-debugging` (`examples/bin/replay_debugging.rs`) is the
//! `stent` command line built with [`registry`] — every inspection command
//! plus `replay`, `resume` and `fork` — running the recorded code, or the
//! changed code when `STENT_EXAMPLE_CODE=changed`:
//!
//! ```sh
//! cargo run -p stent-examples --example replay_debugging      # fills stent-replay_debugging.db
//! cargo run -p stent-examples --bin stent-replay-debugging -- --db stent-replay_debugging.db replay ID
//! STENT_EXAMPLE_CODE=changed cargo run -p stent-examples --bin stent-replay-debugging -- \
//!     --db stent-replay_debugging.db replay ID --step
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::definition::{BoxFuture, DurableFn, DurableOptions};
use stent::{Call, ExecutionId, FunctionRegistry, Stent};

use crate::support::LocalWorker;

/// Which code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The code that recorded the journals.
    Recorded,
    /// The next deployment: a changed checkout, a fixed report.
    Changed,
}

impl Code {
    /// `Changed` when the environment variable `STENT_EXAMPLE_CODE` is
    /// `changed`, else `Recorded`.
    pub fn from_env() -> Code {
        match std::env::var("STENT_EXAMPLE_CODE").as_deref() {
            Ok("changed") => Code::Changed,
            _ => Code::Recorded,
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Its number.
    pub id: u64,
    /// Its lines.
    pub items: Vec<Item>,
}

/// The order both versions of `checkout` are run on.
pub fn sample_order() -> Order {
    let item = |sku: &str, qty| Item {
        sku: sku.to_string(),
        qty,
    };
    Order {
        id: 7,
        items: vec![item("apple", 1), item("pear", 2), item("plum", 3)],
    }
}

/// Reserves the items of an order.
#[stent::durable]
pub async fn reserve(order: Order) -> Result<String, String> {
    Ok(format!("reservation-{}", order.id))
}

/// Charges an order.
#[stent::durable]
pub async fn charge(order_id: u64, cents: u64) -> Result<String, String> {
    Ok(format!("receipt-{order_id}-{cents}"))
}

/// Ships an order.
#[stent::durable]
pub async fn ship(order_id: u64) -> Result<String, String> {
    Ok(format!("parcel-{order_id}"))
}

/// Loads a source: its total.
#[stent::durable]
pub async fn load(source: String) -> Result<u64, String> {
    Ok(source.len() as u64 * 10)
}

/// Divides, failing on zero.
#[stent::durable]
pub async fn divide(total: u64, by: u64) -> Result<u64, String> {
    total
        .checked_div(by)
        .ok_or_else(|| "division by zero".to_string())
}

/// A durable function written out by hand, so that two versions can share
/// one registered name.
macro_rules! version {
    ($(#[$doc:meta])* $def:ident, $name:literal, |$arg:ident : $ty:ty| -> $ok:ty $body:block) => {
        $(#[$doc])*
        pub struct $def;

        impl DurableFn for $def {
            type Args = ($ty,);
            type Output = $ok;
            type Error = String;
            const NAME: &'static str = $name;

            fn options() -> DurableOptions<Self::Args> {
                DurableOptions::new()
            }

            fn run(args: Self::Args) -> BoxFuture<Result<$ok, String>> {
                let ($arg,) = args;
                Box::pin(async move $body)
            }
        }
    };
}

version!(
    /// `checkout`, as recorded.
    Checkout,
    "stent_examples::replay_debugging::checkout",
    |order: Order| -> String {
        let reservation = reserve(order.clone()).await?;
        let receipt = charge(order.id, 4200).await?;
        let parcel = ship(order.id).await?;
        Ok(format!("{reservation} {receipt} {parcel}"))
    }
);

version!(
    /// `checkout`, changed: one more plum, a new price.
    CheckoutChanged,
    "stent_examples::replay_debugging::checkout",
    |order: Order| -> String {
        let mut order = order;
        order.items[2].qty += 1;
        let reservation = reserve(order.clone()).await?;
        let receipt = charge(order.id, 4300).await?;
        let parcel = ship(order.id).await?;
        Ok(format!("{reservation} {receipt} {parcel}"))
    }
);

version!(
    /// `report`, as recorded: divides by zero.
    Report,
    "stent_examples::replay_debugging::report",
    |source: String| -> u64 {
        let total = load(source).await?;
        divide(total, 0).await
    }
);

version!(
    /// `report`, fixed.
    ReportFixed,
    "stent_examples::replay_debugging::report",
    |source: String| -> u64 {
        let total = load(source).await?;
        divide(total, 2).await
    }
);

/// The functions of `code`.
pub fn registry(code: Code) -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register(reserve)
        .register(charge)
        .register(ship)
        .register(load)
        .register(divide);
    match code {
        Code::Recorded => r.register_def::<Checkout>().register_def::<Report>(),
        Code::Changed => r
            .register_def::<CheckoutChanged>()
            .register_def::<ReportFixed>(),
    };
    r
}

/// The executions the example records: a checkout that completed and a
/// report that failed.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The completed checkout.
    pub checkout: ExecutionId,
    /// The failed report.
    pub report: ExecutionId,
}

/// Runs one checkout and one report with the recorded code on `executor`'s
/// backend (a worker in this process), until both ended.
pub async fn record(executor: &Stent) -> crate::Result<Recorded> {
    let worker = LocalWorker::start(executor, |w| w).await;
    let checkout = executor
        .dispatch(Call::<Checkout>::new((sample_order(),)))
        .await?;
    let report = executor
        .dispatch(Call::<Report>::new(("quarterly".to_string(),)))
        .await?;
    let receipt = executor
        .wait_for::<String, String>(checkout, Some(Duration::from_secs(30)))
        .await?;
    println!("checkout {checkout}: {receipt:?}");
    let failed = executor
        .wait_for::<u64, String>(report, Some(Duration::from_secs(30)))
        .await?;
    println!("report {report}: {failed:?}");
    worker.stop().await?;
    Ok(Recorded { checkout, report })
}
