#[stent::durable]
async fn step(x: u32) -> u32 {
    x
}

fn main() {}
