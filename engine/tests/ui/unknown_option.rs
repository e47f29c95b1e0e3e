#[stent::durable(retries = 3)]
async fn step(x: u32) -> Result<u32, String> {
    Ok(x)
}

fn main() {}
