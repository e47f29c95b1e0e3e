//! A saga: book a flight, a hotel and a car as durable steps; when a later
//! step fails, run the compensations of the earlier ones in reverse order.
//!
//! Compensations are durable steps too (with a retry policy), so a crash in
//! the middle of compensating resumes the compensation where it stopped and
//! never cancels a booking twice. The bookings themselves are kept by a fake
//! provider in this process ([`active_reservations`]), so you can check that
//! a failed trip leaves nothing booked.
//!
//! The list of compensations is ordinary workflow state: after a crash the
//! workflow's code runs again, every completed booking is answered from the
//! journal, and the list is rebuilt exactly as it was.
//!
//! Cancelling a trip mid-way compensates too. Cancellation is final and stops
//! the workflow's code at its next durable point, so the workflow registers
//! each undo with `Stent::on_cancel` *before* the step it undoes (the
//! confirmation codes derive from the trip id, and cancelling a code that
//! was never booked is harmless); `executor.cancel_execution(id)` then
//! starts one compensation execution that runs the registered undos newest
//! first.
//!
//! ```sh
//! cargo run -p stent-examples --example saga_trip_booking
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{RetryPolicy, Stent};

use crate::support::{LocalWorker, print_calls};

/// What the traveller asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripRequest {
    /// Unique id of the trip (confirmation codes derive from it).
    pub trip_id: String,
    /// Who travels.
    pub traveller: String,
    /// Where to.
    pub destination: String,
    /// Nights at the hotel.
    pub nights: u32,
    /// The car class to rent; the fake provider has none of class
    /// `"space shuttle"`.
    pub car_class: String,
    /// Wait for a `"confirm"` signal from the traveller before renting the
    /// car.
    #[serde(default)]
    pub confirm_before_car: bool,
}

/// A booked trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Itinerary {
    /// Flight confirmation code.
    pub flight: String,
    /// Hotel confirmation code.
    pub hotel: String,
    /// Car confirmation code.
    pub car: String,
}

/// Why a booking step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BookingError {
    /// The provider has nothing matching the request.
    Unavailable(String),
    /// The provider could not be reached (worth retrying).
    Unreachable(String),
}

impl std::fmt::Display for BookingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BookingError::Unavailable(what) => write!(f, "unavailable: {what}"),
            BookingError::Unreachable(what) => write!(f, "provider unreachable: {what}"),
        }
    }
}

impl std::error::Error for BookingError {}

/// The saga's failure: which step failed, why, and what was undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripFailed {
    /// The step that failed (`"flight"`, `"hotel"` or `"car"`).
    pub step: String,
    /// Its error.
    pub error: BookingError,
    /// The bookings cancelled by compensation, in the order they were
    /// cancelled (the reverse of the booking order).
    pub compensated: Vec<String>,
}

/// An undo action recorded after each successful booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Compensation {
    CancelFlight(String),
    CancelHotel(String),
}

impl Compensation {
    /// Runs the compensation as a durable step; returns what it undid.
    async fn run(self) -> Result<String, BookingError> {
        match self {
            Compensation::CancelFlight(code) => cancel_flight(code).await,
            Compensation::CancelHotel(code) => cancel_hotel(code).await,
        }
    }
}

// ---------------------------------------------------------------------------
// A fake booking provider: confirmation code -> still active?

static RESERVATIONS: Mutex<BTreeMap<String, bool>> = Mutex::new(BTreeMap::new());

fn reserve(code: &str) {
    RESERVATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(code.to_string(), true);
}

fn release(code: &str) {
    RESERVATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(code.to_string(), false);
}

/// The confirmation codes of trip `trip_id` that the fake provider still
/// holds (booked and not cancelled).
///
/// ```
/// assert!(stent_examples::saga_trip_booking::active_reservations("no-such-trip").is_empty());
/// ```
pub fn active_reservations(trip_id: &str) -> Vec<String> {
    RESERVATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(code, active)| **active && code.ends_with(&format!("-{trip_id}")))
        .map(|(code, _)| code.clone())
        .collect()
}

fn compensation_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(10)
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(5))
}

fn booking_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(100))
        .retry_for(|e: &BookingError| matches!(e, BookingError::Unreachable(_)))
}

// ---------------------------------------------------------------------------
// The steps.

/// Books the flight; returns its confirmation code.
#[stent::durable(retry_policy = booking_policy())]
pub async fn book_flight(trip: TripRequest) -> Result<String, BookingError> {
    let code = format!("FL-{}", trip.trip_id);
    reserve(&code);
    println!(
        "  [{}] booked flight to {} for {} -> {code}",
        trip.trip_id, trip.destination, trip.traveller
    );
    Ok(code)
}

/// Books the hotel; returns its confirmation code.
#[stent::durable(retry_policy = booking_policy())]
pub async fn book_hotel(trip: TripRequest) -> Result<String, BookingError> {
    let code = format!("HO-{}", trip.trip_id);
    reserve(&code);
    println!(
        "  [{}] booked {} nights in {} -> {code}",
        trip.trip_id, trip.nights, trip.destination
    );
    Ok(code)
}

/// Rents the car; fails for the class `"space shuttle"`.
#[stent::durable(retry_policy = booking_policy())]
pub async fn book_car(trip: TripRequest) -> Result<String, BookingError> {
    if trip.car_class == "space shuttle" {
        println!(
            "  [{}] car rental FAILED: no {} available in {}",
            trip.trip_id, trip.car_class, trip.destination
        );
        return Err(BookingError::Unavailable(format!(
            "no {} in {}",
            trip.car_class, trip.destination
        )));
    }
    let code = format!("CA-{}", trip.trip_id);
    reserve(&code);
    println!("  [{}] rented a {} -> {code}", trip.trip_id, trip.car_class);
    Ok(code)
}

/// Compensation: cancels a flight booking.
#[stent::durable(retry_policy = compensation_policy())]
pub async fn cancel_flight(code: String) -> Result<String, BookingError> {
    release(&code);
    println!("  compensation: cancelled flight {code}");
    Ok(code)
}

/// Compensation: cancels a hotel booking.
#[stent::durable(retry_policy = compensation_policy())]
pub async fn cancel_hotel(code: String) -> Result<String, BookingError> {
    release(&code);
    println!("  compensation: cancelled hotel {code}");
    Ok(code)
}

/// Compensation: returns a rented car.
#[stent::durable(retry_policy = compensation_policy())]
pub async fn cancel_car(code: String) -> Result<String, BookingError> {
    release(&code);
    println!("  compensation: returned car {code}");
    Ok(code)
}

/// Registers `undo` to run if the trip is cancelled (see the module docs).
fn undo_on_cancel<D: stent::definition::DurableFn>(
    undo: stent::Call<D>,
) -> Result<(), (String, BookingError)> {
    Stent::on_cancel(undo).map_err(|e| {
        (
            "setup".to_string(),
            BookingError::Unreachable(e.to_string()),
        )
    })
}

// ---------------------------------------------------------------------------
// The saga.

/// The workflow: books flight, hotel and car in order; if a booking fails,
/// undoes the earlier ones in reverse order and returns [`TripFailed`].
#[stent::durable]
pub async fn book_trip(trip: TripRequest) -> Result<Itinerary, TripFailed> {
    let mut undo: Vec<Compensation> = Vec::new();
    let failed = |step: &str, error: BookingError| (step.to_string(), error);

    let id = &trip.trip_id;
    let outcome = async {
        undo_on_cancel(cancel_flight(format!("FL-{id}")))?;
        let flight = book_flight(trip.clone())
            .await
            .map_err(|e| failed("flight", e))?;
        undo.push(Compensation::CancelFlight(flight.clone()));
        undo_on_cancel(cancel_hotel(format!("HO-{id}")))?;
        let hotel = book_hotel(trip.clone())
            .await
            .map_err(|e| failed("hotel", e))?;
        undo.push(Compensation::CancelHotel(hotel.clone()));
        if trip.confirm_before_car {
            println!("  [{id}] waiting for the traveller to confirm the car");
            let _: () = Stent::wait_for_signal("confirm")
                .await
                .map_err(|e| failed("confirm", BookingError::Unreachable(e.to_string())))?;
        }
        undo_on_cancel(cancel_car(format!("CA-{id}")))?;
        let car = book_car(trip.clone()).await.map_err(|e| failed("car", e))?;
        Ok(Itinerary { flight, hotel, car })
    }
    .await;

    match outcome {
        Ok(itinerary) => Ok(itinerary),
        Err((step, error)) => {
            let mut compensated = Vec::new();
            while let Some(compensation) = undo.pop() {
                // Compensations retry for a long time; if one still fails,
                // report it rather than hide it.
                match compensation.run().await {
                    Ok(code) => compensated.push(code),
                    Err(e) => compensated.push(format!("FAILED TO UNDO: {e}")),
                }
            }
            Err(TripFailed {
                step,
                error,
                compensated,
            })
        }
    }
}

/// What [`run`] observed.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaReport {
    /// The trip that went through.
    pub booked: Result<Itinerary, TripFailed>,
    /// The trip whose car rental failed.
    pub failed: Result<Itinerary, TripFailed>,
    /// The journaled calls of the failed trip, in order: short function name
    /// and state.
    pub failed_calls: Vec<(String, String)>,
    /// The trip cancelled while it waited for confirmation: what its
    /// compensation execution undid.
    pub cancelled: stent::CompensationReport,
}

/// Runs the example: one trip that books fine and one whose car rental
/// fails, which is compensated. `suffix` makes trip ids unique (tests run
/// several examples in one process).
pub async fn run(executor: &Stent, suffix: &str) -> crate::Result<SagaReport> {
    let worker = LocalWorker::start(executor, |w| w).await;

    let good = TripRequest {
        trip_id: format!("T1{suffix}"),
        traveller: "Ada".into(),
        destination: "Lisbon".into(),
        nights: 3,
        car_class: "compact".into(),
        confirm_before_car: false,
    };
    let bad = TripRequest {
        trip_id: format!("T2{suffix}"),
        traveller: "Grace".into(),
        destination: "Reykjavik".into(),
        nights: 2,
        car_class: "space shuttle".into(),
        confirm_before_car: false,
    };
    let hesitant = TripRequest {
        trip_id: format!("T3{suffix}"),
        traveller: "Edsger".into(),
        destination: "Eindhoven".into(),
        nights: 1,
        car_class: "van".into(),
        confirm_before_car: true,
    };

    println!(
        "trip 1: {} to {}, a {}",
        good.traveller, good.destination, good.car_class
    );
    let id = executor.dispatch(book_trip(good.clone())).await?;
    let booked = executor
        .wait_for::<Itinerary, TripFailed>(id, Some(Duration::from_secs(60)))
        .await?;
    match &booked {
        Ok(it) => println!(
            "trip 1 booked: flight {}, hotel {}, car {}",
            it.flight, it.hotel, it.car
        ),
        Err(f) => println!("trip 1 failed: {f:?}"),
    }
    println!(
        "  still booked at the provider: {:?}",
        active_reservations(&good.trip_id)
    );

    println!();
    println!(
        "trip 2: {} to {}, a {}",
        bad.traveller, bad.destination, bad.car_class
    );
    let id = executor.dispatch(book_trip(bad.clone())).await?;
    let failed = executor
        .wait_for::<Itinerary, TripFailed>(id, Some(Duration::from_secs(60)))
        .await?;
    match &failed {
        Ok(it) => println!("trip 2 booked (unexpectedly): {it:?}"),
        Err(f) => println!(
            "trip 2 failed at the {} step ({}); compensated in reverse order: {}",
            f.step,
            f.error,
            f.compensated.join(", ")
        ),
    }
    println!(
        "  still booked at the provider: {:?}",
        active_reservations(&bad.trip_id)
    );
    println!("  the journal of trip 2, as state_of reports its calls:");
    let failed_calls = print_calls(executor, id, &[])
        .await?
        .iter()
        .map(|c| {
            (
                c.function
                    .as_deref()
                    .map_or("?", crate::support::short_name)
                    .to_string(),
                c.state.to_string(),
            )
        })
        .collect();

    println!();
    println!(
        "trip 3: {} to {}, confirms the car later",
        hesitant.traveller, hesitant.destination
    );
    let id = executor.dispatch(book_trip(hesitant.clone())).await?;
    // Wait until flight and hotel are booked and the trip waits.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while executor.state_of(id).await?.progress.len() < 2 {
        if tokio::time::Instant::now() > give_up {
            return Err("trip 3 never booked its flight and hotel".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  the traveller gives up: cancelling trip 3");
    let cancellation = executor.cancel_execution(id).await?;
    let undo = cancellation
        .compensation
        .ok_or("trip 3 registered compensations")?;
    let cancelled = match executor
        .wait_for::<stent::CompensationReport, stent::CompensationReport>(
            undo,
            Some(Duration::from_secs(60)),
        )
        .await?
    {
        Ok(report) | Err(report) => report,
    };
    println!(
        "trip 3 cancelled; compensations ran newest first: {}",
        cancelled
            .completed
            .iter()
            .map(|f| crate::support::short_name(f))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  still booked at the provider: {:?}",
        active_reservations(&hesitant.trip_id)
    );

    worker.stop().await?;
    Ok(SagaReport {
        booked,
        failed,
        failed_calls,
        cancelled,
    })
}
