#[stent::durable(name = "  ")]
async fn step(x: u32) -> Result<u32, String> {
    Ok(x)
}

fn main() {}
