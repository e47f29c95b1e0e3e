//! A saga: book a flight, a hotel and a car as durable steps; when the car
//! rental fails, the hotel and the flight are cancelled by compensating
//! durable steps, in reverse order. Shows a trip that books fine and one
//! that is compensated. See `stent_examples::saga_trip_booking`.
//!
//! ```sh
//! cargo run -p stent-examples --example saga_trip_booking
//! ```
//!
//! Note: cancelling an execution does not run compensations — `cancel` is
//! final and stops the code (cancellation-triggered compensation is not
//! supported by the engine yet).

use stent_examples::support::{db_path, fresh_sqlite};

#[tokio::main]
async fn main() -> stent_examples::Result<()> {
    let executor = fresh_sqlite(db_path("saga_trip_booking")).await?;
    stent_examples::saga_trip_booking::run(&executor, "").await?;
    Ok(())
}
