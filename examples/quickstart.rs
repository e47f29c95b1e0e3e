//! Quick start: an order workflow of four durable steps and a durable sleep,
//! on an embedded SQLite file in the current directory, with a worker
//! running in the same process.
//!
//! ```sh
//! cargo run -p stent-examples --example quickstart
//! ```
//!
//! Kill it half-way (Ctrl-C) and run it again: a new order is placed, and the
//! unfinished one from the first run is resumed from its journal — steps it
//! had completed are not run again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::Stent;
use stent::backends::SqliteBackend;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    total_cents: u64,
}

#[stent::durable]
async fn fetch_order(id: u64) -> Result<Order, String> {
    let order = Order {
        id,
        items: vec!["keyboard".into(), "mouse".into()],
        total_cents: 12_900,
    };
    println!(
        "  step 1: fetched order {id} with {} items",
        order.items.len()
    );
    Ok(order)
}

#[stent::durable]
async fn charge_card(order_id: u64, cents: u64) -> Result<String, String> {
    let payment = format!("pay_{order_id}_{cents}");
    println!("  step 2: charged {cents} cents -> {payment}");
    Ok(payment)
}

#[stent::durable]
async fn reserve_stock(items: Vec<String>) -> Result<u32, String> {
    println!("  step 3: reserved {} items", items.len());
    Ok(items.len() as u32)
}

#[stent::durable]
async fn ship(order_id: u64) -> Result<String, String> {
    let tracking = format!("TRACK-{order_id:05}");
    println!("  step 4: shipped, tracking number {tracking}");
    Ok(tracking)
}

#[stent::durable]
async fn place_order(id: u64) -> Result<String, String> {
    let order = fetch_order(id).await?;
    let payment = charge_card(order.id, order.total_cents).await?;
    reserve_stock(order.items.clone()).await?;
    println!("  (durable sleep of 1s: the worker slot is free meanwhile)");
    Stent::sleep("1s").await.map_err(|e| e.to_string())?;
    let tracking = ship(order.id).await?;
    Ok(format!(
        "order {id}: paid with {payment}, tracking {tracking}"
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = SqliteBackend::open("stent-quickstart.db").await?;
    backend.init_db().await?;
    let executor = Stent::new(backend);

    let lifecycle = executor.create_worker_lifecycle(Some("quickstart"));
    let worker = tokio::spawn(executor.worker().lifecycle(lifecycle.clone()).serve());
    lifecycle.wait_until_ready().await;

    let id = executor.dispatch(place_order(42)).await?;
    println!("dispatched execution {id}");
    let result = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(60)))
        .await?;
    match result {
        Ok(summary) => println!("result: {summary}"),
        Err(e) => println!("workflow failed: {e}"),
    }
    let state = executor.state_of(id).await?;
    println!("state: {}", state.state);

    lifecycle.request_drain();
    worker.await??;
    Ok(())
}
