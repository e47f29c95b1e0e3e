//! Every example workflow under `stent::testing`: each case runs the
//! workflow clean and under a generated fault plan (worker crashes at any
//! storage write, transient failures, zombie leases, late or duplicated
//! signals, clock jumps) on the memory backend with a virtual clock, and
//! checks that both runs end alike with equal journals.
//!
//! The examples' fake services keep process-wide state (request counters,
//! reservations), keyed by their inputs; the strategies below draw inputs
//! that this file alone uses.

use std::time::Duration;

use stent::testing::Simulation;
use stent::testing::proptest::prelude::*;
use stent_examples::{
    approval, batch_processing, crash_and_recover, media_pipeline, parallel_scraper,
    replay_debugging, research_agent, saga_trip_booking,
};

/// Cases per example (each: one clean and one faulty run).
const CASES: u32 = 1000;

fn sim() -> Simulation {
    Simulation::new().cases(CASES)
}

#[test]
fn saga_trip_booking_books_or_compensates() {
    let trip = (
        0u32..1_000_000,
        prop::sample::select(vec!["compact", "van", "space shuttle"]),
        any::<bool>(),
        1u32..14,
    )
        .prop_map(|(n, car, confirm, nights)| saga_trip_booking::TripRequest {
            trip_id: format!("sim-{n}"),
            traveller: "Ada".into(),
            destination: "Lisbon".into(),
            nights,
            car_class: car.into(),
            confirm_before_car: confirm,
        });
    sim()
        .signal("confirm", &())
        .check(saga_trip_booking::book_trip, (trip,));
}

#[test]
fn batch_processing_maps_under_a_concurrency_limit() {
    let batch = (0u32..1_000_000).prop_map(|n| format!("sim-batch-{n}"));
    sim()
        .cases(CASES / 2)
        .check(batch_processing::process_batch, (batch, 0u64..40));
}

#[test]
fn media_pipeline_retries_caches_and_publishes() {
    let channels = ["sim-news", "sim-sports", "sim-music"];
    for c in channels {
        // Without the fix the thumbnailer panics until dead-lettered,
        // which a simulation reports as a failure.
        media_pipeline::deploy_thumbnail_fix(c);
    }
    let video = (0u32..1_000_000).prop_map(|n| format!("clip-{n}.mov"));
    sim().executions(2).check(
        media_pipeline::media_pipeline,
        (
            prop::sample::select(channels.to_vec()).prop_map(String::from),
            video,
        ),
    );
}

#[test]
fn parallel_scraper_gathers_pages_and_failures() {
    let urls = (0u32..1_000_000).prop_flat_map(|n| {
        let all = parallel_scraper::urls(&format!("sim-{n}.test"));
        prop::sample::subsequence(all.clone(), 0..=all.len())
    });
    sim().check(parallel_scraper::crawl, (urls,));
}

#[test]
fn approval_waits_for_a_signal_or_expires() {
    let expense = (0u32..1_000_000, 1u64..1_000_000).prop_map(|(n, cents)| approval::Expense {
        id: format!("sim-{n}"),
        employee: "Grace".into(),
        cents,
        reason: "conference".into(),
    });
    let verdict = |approved: bool| approval::Verdict {
        approved,
        by: "Linus".into(),
        comment: if approved { "ok" } else { "too much" }.into(),
    };
    // Answered (approved, then rejected) well within the timeout...
    for approved in [true, false] {
        sim()
            .cases(CASES / 4)
            .signal(approval::SIGNAL, &verdict(approved))
            .max_signal_delay(Duration::from_secs(30 * 60))
            .check(
                approval::approve_expense,
                (expense.clone(), Just("2h".to_string())),
            );
    }
    // ...or never answered: it expires, in every run.
    sim()
        .cases(CASES / 2)
        .time_limit(Duration::from_secs(7 * 24 * 3600))
        .check(
            approval::approve_expense,
            (
                expense,
                prop::sample::select(vec!["1m", "1h", "3d"]).prop_map(String::from),
            ),
        );
}

#[test]
fn research_agent_sleeps_between_rounds() {
    let topic = (0u32..1_000_000).prop_map(|n| format!("sim topic {n}"));
    let interval = (0u64..7200).prop_map(Duration::from_secs);
    sim().check(research_agent::research, (topic, 1u32..4, interval));
}

#[test]
fn crash_and_recover_steps_survive_crashes() {
    // Every step appends to the log and syncs it: on a memory file system
    // where there is one, so the cases do not wait for the disk.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        let d = shm.join(format!(
            "stent-simulation-{}",
            stent::ExecutionId::new_random()
        ));
        std::fs::create_dir_all(&d).expect("dir in /dev/shm");
        d
    } else {
        stent_examples::support::temp_dir("simulation").expect("temp dir")
    };
    let log = dir.join("steps.log").display().to_string();
    sim()
        .cases(CASES / 2)
        .check(crash_and_recover::multi_step, (Just(log), 1u32..6));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_debugging_both_versions_of_the_code() {
    use replay_debugging::{Checkout, CheckoutChanged, Code, Item, Order, Report, ReportFixed};
    let order = (
        0u64..1_000_000,
        prop::collection::vec((0u32..50, 1u32..5), 3..6),
    )
        .prop_map(|(id, lines)| Order {
            id,
            items: lines
                .into_iter()
                .map(|(sku, qty)| Item {
                    sku: format!("sku-{sku}"),
                    qty,
                })
                .collect(),
        });
    let source = "[a-z]{0,12}";
    let recorded = sim()
        .cases(CASES / 4)
        .function_registry(replay_debugging::registry(Code::Recorded));
    recorded.check_def::<Checkout, _>((order.clone(),));
    recorded.check_def::<Report, _>((source,));
    let changed = sim()
        .cases(CASES / 4)
        .function_registry(replay_debugging::registry(Code::Changed));
    changed.check_def::<CheckoutChanged, _>((order,));
    changed.check_def::<ReportFixed, _>((source,));
}
