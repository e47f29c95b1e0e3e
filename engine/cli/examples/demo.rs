//! Fills a SQLite database with a few executions to try the `stent` CLI on:
//! a completed order with a nested call, a typed failure, one waiting for a
//! signal, and one whose step keeps panicking (a dead letter).
//!
//! ```text
//! cargo run -p stent-cli --example demo -- demo.db
//! cargo run -p stent-cli --bin stent -- --db demo.db list
//! cargo run -p stent-cli --example demo -- big.db 5000   # and 5000 more orders
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::backends::SqliteBackend;
use stent::{RetryPolicy, Stent};

#[stent::durable]
async fn charge(order: u64, cents: u64) -> Result<String, String> {
    Ok(format!("receipt-{order}-{cents}"))
}

#[stent::durable]
async fn reserve(sku: String, quantity: u32) -> Result<u32, String> {
    if sku.is_empty() {
        return Err("no sku".into());
    }
    Ok(quantity)
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order: u64,
    receipt: String,
    items: u32,
}

#[stent::durable]
async fn checkout(order: u64, skus: Vec<String>) -> Result<Receipt, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    let mut items = 0;
    for sku in skus {
        items += reserve(sku, 2).await?;
        ctx.counters("reserved").add(2).map_err(|e| e.to_string())?;
    }
    ctx.state("phase")
        .set("charging")
        .map_err(|e| e.to_string())?;
    let receipt = charge(order, 4200).await?;
    Ok(Receipt {
        order,
        receipt,
        items,
    })
}

#[derive(Debug, Serialize, Deserialize)]
enum OrderError {
    OutOfStock { sku: String },
}

#[stent::durable]
async fn refund(order: u64) -> Result<u64, OrderError> {
    Err(OrderError::OutOfStock {
        sku: format!("A-{order}"),
    })
}

#[stent::durable]
async fn publish(doc: String) -> Result<String, String> {
    let who: String = Stent::wait_for_signal("approval")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{doc} approved by {who}"))
}

fn once() -> RetryPolicy {
    RetryPolicy::default().max_attempts(1)
}

#[stent::durable(retry_policy = once())]
async fn parse_feed(url: String) -> Result<u64, String> {
    panic!("unexpected end of feed at {url}")
}

#[stent::durable]
async fn import(url: String) -> Result<u64, String> {
    parse_feed(url).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "demo.db".into());
    // Optional: that many more completed orders, to try the CLI on a bigger database.
    let more: u64 = match std::env::args().nth(2) {
        Some(n) => n.parse()?,
        None => 0,
    };
    let backend = SqliteBackend::open(&path).await?;
    backend.init_db().await?;
    let executor = Stent::builder(backend)
        .poll_max_interval(Duration::from_millis(100))
        .build();
    let lifecycle = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(
        executor
            .worker()
            .poll_max_interval(Duration::from_millis(100))
            .lifecycle(lifecycle.clone())
            .serve(),
    );
    let order = executor
        .dispatch(checkout(7, vec!["A-1".into(), "B-2".into()]))
        .tags(["shop"])
        .priority(5)
        .await?;
    let refund = executor.dispatch(refund(8)).await?;
    let waiting = executor.dispatch(publish("post-42".into())).await?;
    let dead = executor
        .dispatch(import("https://example.invalid/feed".into()))
        .await?;
    let _ = executor.wait_for::<Receipt, String>(order, None).await?;
    let mut extra = Vec::new();
    for n in 0..more {
        extra.push(
            executor
                .dispatch(checkout(1000 + n, vec![format!("C-{n}")]))
                .await?,
        );
    }
    for id in extra {
        let _ = executor.wait_for::<Receipt, String>(id, None).await?;
    }
    let _ = executor.wait_for::<u64, OrderError>(refund, None).await?;
    while executor.list_dead_letters(1).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lifecycle.request_drain();
    worker.await??;
    println!("completed: {order}\nfailed:    {refund}\nwaiting:   {waiting}\ndead:      {dead}");
    Ok(())
}
