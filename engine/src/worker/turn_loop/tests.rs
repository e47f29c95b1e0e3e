//! Transitions of the turn loop, without a backend.

use super::*;

const MS: Duration = Duration::from_millis(1);

type Machine = TurnLoop<&'static str>;
type N = Next<&'static str, &'static str, &'static str>;
type S = Seen<&'static str, &'static str, &'static str>;

fn poll() -> PollSettings {
    PollSettings {
        min: 10 * MS,
        max: 80 * MS,
        factor: 2.0,
    }
}

fn start(read_storage: bool) -> Machine {
    let (m, first) = Machine::new::<&str, &str>(poll(), read_storage);
    assert_eq!(first, N::Gate);
    m
}

fn checked() -> S {
    S::Checked {
        lease_lost: false,
        deadline_passed: false,
        kept_end: None,
    }
}

fn stay(timer_in: Option<Duration>) -> Stay {
    Stay {
        timer_in,
        deadline_in: None,
        io_wait: false,
    }
}

/// Gate passed, checks passed: the code is polled.
fn running(read_storage: bool) -> Machine {
    let mut m = start(read_storage);
    assert_eq!(m.next(S::Gated(Gate::Run)), N::Check);
    assert_eq!(m.next(checked()), N::Advance);
    m
}

#[test]
fn a_step_that_waits_reads_storage_once_then_stores_and_waits() {
    let mut m = running(true);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    assert_eq!(
        m.next(S::Gathered(vec![])),
        N::Collect { read_storage: true }
    );
    assert_eq!(m.next(S::Collected(vec![])), N::Cache);
    assert_eq!(m.next(S::Cached(false)), N::Store { behind: false });
    assert_eq!(
        m.next(S::Stored(Stored::Stay(stay(None)))),
        N::Wait {
            delay: 10 * MS,
            stay: stay(None)
        }
    );
    // Woken by a hand-off: the answer is applied without reading storage.
    assert_eq!(m.next(S::Woke(Wake::Handoff("result"))), N::Check);
    assert_eq!(m.next(checked()), N::Advance);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    assert_eq!(m.next(S::Gathered(vec![])), N::Apply("result"));
    assert_eq!(m.next(S::Applied), N::Check);
    assert_eq!(m.next(checked()), N::Advance);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    assert_eq!(
        m.next(S::Gathered(vec![])),
        N::Collect {
            read_storage: false
        }
    );
}

#[test]
fn answers_are_applied_in_the_order_they_arrived() {
    let mut m = running(false);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    assert_eq!(
        m.next(S::Gathered(vec![])),
        N::Collect {
            read_storage: false
        }
    );
    assert_eq!(m.next(S::Collected(vec!["timer", "signal"])), N::Check);
    assert_eq!(m.next(checked()), N::Advance);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    // Hand-offs gathered now queue behind what was collected.
    assert_eq!(m.next(S::Gathered(vec!["handoff"])), N::Apply("timer"));
    for next in ["signal", "handoff"] {
        assert_eq!(m.next(S::Applied), N::Check);
        assert_eq!(m.next(checked()), N::Advance);
        assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
        assert_eq!(m.next(S::Gathered(vec![])), N::Apply(next));
    }
}

#[test]
fn code_catching_up_with_its_journal_stores_without_reading_answers() {
    let mut m = running(true);
    assert_eq!(
        m.next(S::Advanced(Progress::Behind)),
        N::Store { behind: true }
    );
    assert_eq!(m.next(S::Stored(Stored::Again)), N::Check);
    assert_eq!(m.next(checked()), N::Advance);
    assert_eq!(m.next(S::Advanced(Progress::Blocked)), N::Gather);
    assert_eq!(
        m.next(S::Gathered(vec![])),
        N::Collect { read_storage: true }
    );
    assert_eq!(m.next(S::Collected(vec![])), N::Cache);
    assert_eq!(m.next(S::Cached(false)), N::Store { behind: false });
}

#[test]
fn a_cache_answer_goes_back_to_the_code() {
    let mut m = running(false);
    m.next(S::Advanced(Progress::Blocked));
    m.next(S::Gathered(vec![]));
    assert_eq!(m.next(S::Collected(vec![])), N::Cache);
    assert_eq!(m.next(S::Cached(true)), N::Check);
}

#[test]
fn checks_come_in_order_lease_then_deadline_then_kept_end() {
    let mut m = start(false);
    m.next(S::Gated(Gate::Run));
    let all = S::Checked {
        lease_lost: true,
        deadline_passed: true,
        kept_end: Some("end"),
    };
    assert_eq!(m.next(all), N::Exit(Exit::LeaseGone));

    let mut m = start(false);
    m.next(S::Gated(Gate::Run));
    let late = S::Checked {
        lease_lost: false,
        deadline_passed: true,
        kept_end: Some("end"),
    };
    assert_eq!(m.next(late), N::TimeOut);
    assert_eq!(m.next(S::Ended(Ended::Done)), N::Exit(Exit::Release));

    let mut m = start(false);
    m.next(S::Gated(Gate::Run));
    let kept = S::Checked {
        lease_lost: false,
        deadline_passed: false,
        kept_end: Some("end"),
    };
    assert_eq!(m.next(kept), N::FinishKept("end"));
}

#[test]
fn a_status_that_ends_the_code_ends_the_run() {
    let mut m = running(false);
    assert_eq!(
        m.next(S::Advanced(Progress::Ends("finished"))),
        N::End("finished")
    );
    assert_eq!(m.next(S::Ended(Ended::Done)), N::Exit(Exit::Release));

    let mut m = running(false);
    m.next(S::Advanced(Progress::Blocked));
    m.next(S::Gathered(vec![]));
    m.next(S::Collected(vec![]));
    m.next(S::Cached(false));
    // Storing a turn that waits long parks the invocation.
    assert_eq!(m.next(S::Ended(Ended::Parked)), N::Exit(Exit::Park));
}

#[test]
fn the_gate_may_end_the_run_before_any_turn() {
    let mut m = start(true);
    assert_eq!(m.next(S::Gated(Gate::Done)), N::Exit(Exit::Release));
    let mut m = start(true);
    assert_eq!(
        m.next(S::Failed(TurnError::LeaseLost)),
        N::Exit(Exit::LeaseGone)
    );
}

#[test]
fn a_failed_gate_recovers_and_checks_idempotency_again() {
    let mut m = start(false);
    assert_eq!(
        m.next(S::Failed(TurnError::Retry("down".into()))),
        N::Recover {
            message: "down".into(),
            gating: true
        }
    );
    assert_eq!(m.next(S::Recovered(true)), N::Gate);
    assert_eq!(m.next(S::Gated(Gate::Run)), N::Check);
}

#[test]
fn commit_failed_then_recovered_replays_and_reads_storage_again() {
    let mut m = running(false);
    m.next(S::Advanced(Progress::Blocked));
    // A hand-off is queued, then the commit of the turn fails.
    assert_eq!(
        m.next(S::Gathered(vec!["handoff", "later"])),
        N::Apply("handoff")
    );
    assert_eq!(m.next(S::Applied), N::Check);
    m.next(checked());
    m.next(S::Advanced(Progress::Blocked));
    assert_eq!(m.next(S::Gathered(vec![])), N::Apply("later"));
    m.next(S::Applied);
    m.next(checked());
    m.next(S::Advanced(Progress::Blocked));
    assert_eq!(m.next(S::Gathered(vec!["dropped"])), N::Apply("dropped"));
    assert_eq!(
        m.next(S::Failed(TurnError::Retry("connection reset".into()))),
        N::Recover {
            message: "connection reset".into(),
            gating: false
        }
    );
    // Recovery's own retries (the reload failing) happen inside
    // recovery; it reports once, when the journal is read again.
    assert_eq!(m.next(S::Recovered(true)), N::Check);
    m.next(checked());
    m.next(S::Advanced(Progress::Blocked));
    // Nothing queued before the fault survives, and storage is read.
    assert_eq!(
        m.next(S::Gathered(vec![])),
        N::Collect { read_storage: true }
    );
}

#[test]
fn commit_failed_and_recovery_gave_up_releases() {
    let mut m = running(false);
    m.next(S::Advanced(Progress::Behind));
    assert!(matches!(
        m.next(S::Failed(TurnError::Retry("disk full".into()))),
        N::Recover { gating: false, .. }
    ));
    assert_eq!(m.next(S::Recovered(false)), N::Exit(Exit::Release));
}

#[test]
fn a_lease_lost_in_any_phase_exits_as_lost() {
    let mut m = running(false);
    m.next(S::Advanced(Progress::Blocked));
    m.next(S::Gathered(vec![]));
    m.next(S::Collected(vec![]));
    assert_eq!(
        m.next(S::Failed(TurnError::LeaseLost)),
        N::Exit(Exit::LeaseGone)
    );
}

#[test]
fn polling_backs_off_until_something_arrives() {
    let mut m = running(false);
    let mut delays = Vec::new();
    for wake in [
        Wake::Slept,
        Wake::Slept,
        Wake::Slept,
        Wake::Slept,
        Wake::Notified,
    ] {
        m.next(S::Advanced(Progress::Blocked));
        m.next(S::Gathered(vec![]));
        m.next(S::Collected(vec![]));
        m.next(S::Cached(false));
        match m.next(S::Stored(Stored::Stay(stay(None)))) {
            N::Wait { delay, .. } => delays.push(delay),
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(m.next(S::Woke(wake)), N::Check);
        m.next(checked());
    }
    m.next(S::Advanced(Progress::Blocked));
    m.next(S::Gathered(vec![]));
    m.next(S::Collected(vec![]));
    m.next(S::Cached(false));
    if let N::Wait { delay, .. } = m.next(S::Stored(Stored::Stay(stay(None)))) {
        delays.push(delay);
    }
    assert_eq!(
        delays,
        [10 * MS, 20 * MS, 40 * MS, 80 * MS, 80 * MS, 10 * MS]
    );
}

#[test]
fn a_near_timer_shortens_the_wait() {
    let mut m = running(false);
    m.next(S::Advanced(Progress::Blocked));
    m.next(S::Gathered(vec![]));
    m.next(S::Collected(vec![]));
    m.next(S::Cached(false));
    let near = stay(Some(3 * MS));
    assert_eq!(
        m.next(S::Stored(Stored::Stay(near))),
        N::Wait {
            delay: 3 * MS,
            stay: near
        }
    );
}

#[test]
fn findings_out_of_step_start_the_turn_again() {
    let mut m = running(false);
    // Code polled, but a collect's answer arrives: not expected.
    assert_eq!(m.next(S::Collected(vec!["x"])), N::Check);
    let mut m = start(false);
    assert_eq!(m.next(S::Cached(true)), N::Gate);
}
