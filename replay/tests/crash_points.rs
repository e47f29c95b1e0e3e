//! For random workflows and every crash point, "replay the journal prefix, then
//! continue" must give the same journal and the same result as one
//! uninterrupted run.

mod common;

use std::task::{Context as TaskCx, Waker};
use std::time::Duration;

use common::{call, id, run_to_end, started};
use futures_util::future::join_all;
use proptest::prelude::*;
use stent_journal::{Event, Failure, Payload, Seq};
use stent_replay::{Command, Context, Driver, Resolution, Status};

#[derive(Debug, Clone)]
enum Step {
    Call(u8),
    Sleep(u8),
    Signal(u8),
    Parallel(Vec<u8>),
    /// Two branches, each a call followed by a sleep, joined.
    Branches(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<u8>().prop_map(Step::Call),
        any::<u8>().prop_map(Step::Sleep),
        (0u8..3).prop_map(Step::Signal),
        prop::collection::vec(any::<u8>(), 1..6).prop_map(Step::Parallel),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::Branches(a, b)),
    ]
}

fn workflow(program: Vec<Step>) -> stent_replay::InvocationFuture {
    Box::pin(async move {
        let ctx = Context::current().expect("driver context");
        let mut acc: u64 = 0;
        for step in program {
            match step {
                Step::Call(n) => acc = acc.wrapping_mul(31).wrapping_add(call(&ctx, n).await),
                Step::Sleep(s) => {
                    let r = ctx
                        .schedule(Command::Timer {
                            duration: Duration::from_secs(s as u64),
                        })
                        .await;
                    assert_eq!(r, Resolution::Done);
                }
                Step::Signal(i) => {
                    let v = ctx
                        .schedule(Command::Signal {
                            name: format!("sig{i}"),
                        })
                        .await;
                    acc += v.into_value().unwrap().decode::<u64>().unwrap();
                }
                Step::Parallel(ns) => {
                    let futs: Vec<_> = ns.iter().map(|n| call(&ctx, *n)).collect();
                    for v in join_all(futs).await {
                        acc = acc.wrapping_add(v);
                    }
                }
                Step::Branches(a, b) => {
                    let branch = |n: u8| {
                        let ctx = ctx.clone();
                        async move {
                            let v = call(&ctx, n).await;
                            ctx.schedule(Command::Timer {
                                duration: Duration::from_secs(1),
                            })
                            .await;
                            v
                        }
                    };
                    let (x, y) = futures_util::future::join(branch(a), branch(b)).await;
                    acc = acc.wrapping_add(x * 3 + y);
                }
            }
        }
        Payload::encode(&acc).map_err(|e| Failure::Aborted {
            message: e.to_string(),
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn replaying_any_prefix_then_continuing_matches_the_clean_run(
        program in prop::collection::vec(step(), 0..12),
        choice_seed in any::<u64>(),
    ) {
        let clean = Driver::new(id(), vec![started()], workflow(program.clone())).unwrap();
        let (journal, result) = run_to_end(clean, choice_seed).unwrap();
        prop_assert!(journal.last().unwrap().kind().is_terminal());

        for crash_at in 1..=journal.len() {
            let prefix = journal[..crash_at].to_vec();
            let recovered = Driver::new(id(), prefix, workflow(program.clone())).unwrap();
            let (journal2, result2) = run_to_end(recovered, choice_seed).unwrap();
            prop_assert_eq!(&journal2, &journal, "crash at {}", crash_at);
            prop_assert_eq!(&result2, &result);
        }
    }
}

#[test]
fn changed_code_is_reported_as_a_divergence_at_the_exact_seq() {
    let (journal, _) = run_to_end(
        Driver::new(
            id(),
            vec![started()],
            workflow(vec![Step::Call(1), Step::Call(2)]),
        )
        .unwrap(),
        0,
    )
    .unwrap();
    // Same shape, other argument in the second call.
    let mut d = Driver::new(
        id(),
        journal.clone(),
        workflow(vec![Step::Call(1), Step::Call(3)]),
    )
    .unwrap();
    let mut cx = TaskCx::from_waker(Waker::noop());
    match d.advance(&mut cx) {
        Status::Stopped(stent_replay::DriverError::Diverged(div)) => {
            assert_eq!(div.seq, Seq(3));
            assert!(matches!(div.recorded, Some(Event::CallScheduled { .. })));
            let text = div.to_string();
            assert!(
                text.contains("seq 3") && text.contains("test::double"),
                "{text}"
            );
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn a_different_result_is_a_divergence() {
    let (mut journal, _) = run_to_end(
        Driver::new(id(), vec![started()], workflow(vec![Step::Call(1)])).unwrap(),
        0,
    )
    .unwrap();
    let last = journal.len() - 1;
    journal[last] = Event::Completed {
        value: Payload::encode(&999u64).unwrap(),
    };
    let mut d = Driver::new(id(), journal, workflow(vec![Step::Call(1)])).unwrap();
    let mut cx = TaskCx::from_waker(Waker::noop());
    assert!(matches!(
        d.advance(&mut cx),
        Status::Stopped(stent_replay::DriverError::Diverged(_))
    ));
}

#[test]
fn a_panic_becomes_a_failure() {
    let fut: stent_replay::InvocationFuture = Box::pin(async { panic!("kaboom") });
    let mut d = Driver::new(id(), vec![started()], fut).unwrap();
    let mut cx = TaskCx::from_waker(Waker::noop());
    match d.advance(&mut cx) {
        Status::Finished(Err(Failure::Panic { message })) => assert_eq!(message, "kaboom"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_context_outside_a_driver() {
    assert!(Context::current().is_none());
    assert!(
        Context::try_current()
            .unwrap_err()
            .to_string()
            .contains("tokio::spawn")
    );
}
