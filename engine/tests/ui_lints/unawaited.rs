#![deny(unused_must_use)]

use stent::Stent;

#[stent::durable]
async fn charge(order: u64) -> Result<u64, String> {
    Ok(order)
}

#[stent::durable]
async fn checkout(order: u64) -> Result<u64, String> {
    charge(order); // forgot .await: the step would never run
    Stent::sleep("1h");
    Stent::wait_for_signal::<bool>("approval");
    Ok(order)
}

fn main() {}
