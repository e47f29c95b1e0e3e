#[stent::durable]
async fn step(x: &str) -> Result<u32, String> {
    Ok(x.len() as u32)
}

fn main() {}
