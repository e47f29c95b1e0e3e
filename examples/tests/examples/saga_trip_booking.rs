use stent_examples::saga_trip_booking::{SagaReport, TripFailed, active_reservations, run};

fn check(report: &SagaReport, suffix: &str) {
    let itinerary = report.booked.as_ref().expect("trip 1 books");
    assert_eq!(itinerary.flight, format!("FL-T1{suffix}"));
    assert_eq!(itinerary.car, format!("CA-T1{suffix}"));
    assert_eq!(active_reservations(&format!("T1{suffix}")).len(), 3);

    let failed: &TripFailed = report.failed.as_ref().expect_err("trip 2 fails");
    assert_eq!(failed.step, "car");
    assert_eq!(
        failed.compensated,
        vec![format!("HO-T2{suffix}"), format!("FL-T2{suffix}")],
        "compensations run in reverse order"
    );
    assert!(active_reservations(&format!("T2{suffix}")).is_empty());

    // Trip 3 was cancelled while waiting: every registered undo ran, newest
    // first (the car's own undo was registered only after the wait).
    assert!(report.cancelled.failed.is_empty(), "{:?}", report.cancelled);
    let undone: Vec<&str> = report
        .cancelled
        .completed
        .iter()
        .map(|f| f.rsplit("::").next().unwrap_or(f))
        .collect();
    assert_eq!(undone, ["cancel_hotel", "cancel_flight"]);
    assert!(active_reservations(&format!("T3{suffix}")).is_empty());
    let calls: Vec<(&str, &str)> = report
        .failed_calls
        .iter()
        .map(|(f, s)| (f.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("book_flight", "completed"),
            ("book_hotel", "completed"),
            ("book_car", "failed"),
            ("cancel_hotel", "completed"),
            ("cancel_flight", "completed"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn saga_books_one_trip_and_compensates_the_other_in_memory() {
    let report = run(&crate::memory(), "-mem").await.unwrap();
    check(&report, "-mem");
}

#[tokio::test]
async fn saga_books_one_trip_and_compensates_the_other_on_sqlite() {
    let (executor, dir) = crate::sqlite("saga").await;
    let report = run(&executor, "-sqlite").await.unwrap();
    check(&report, "-sqlite");
    crate::cleanup(dir);
}
