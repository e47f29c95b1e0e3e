//! What the replay tests share: an invocation, its `Started` event, and a
//! driver run to its end with every effect answered deterministically.

use std::task::{Context as TaskCx, Waker};

use stent_journal::{Event, Failure, InvocationId, Payload, Timestamp};
use stent_replay::{Command, Context, Driver, DriverError, Outstanding, Status};

/// The `Started` event of the test workflow.
pub fn started() -> Event {
    Event::Started {
        function: "test::wf".into(),
        version: None,
        args: Payload::encode(&()).unwrap(),
        parent: None,
        forked_from: None,
    }
}

/// The test invocation's id.
pub fn id() -> InvocationId {
    "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap()
}

/// Calls `test::double(n)` from the workflow running in `ctx` and returns
/// its answer (`2 n`, from [`run_to_end`]).
pub async fn call(ctx: &Context, n: u8) -> u64 {
    let r = ctx
        .schedule(Command::call(
            "test::double",
            None,
            Payload::encode(&(n,)).unwrap(),
        ))
        .await;
    r.into_value().unwrap().decode::<u64>().unwrap()
}

/// A finished run: the whole journal and the result.
pub type Run = (Vec<Event>, Result<Payload, Failure>);

/// Runs the driver to the end, answering outstanding effects in an order that
/// depends only on `choice_seed` and the journal so far: a call of `(n,)`
/// (`n: u8`) with `2 n`, a timer by firing, a signal with its name's length
/// plus its seq. `Err` when the driver stops.
pub fn run_to_end(mut driver: Driver, choice_seed: u64) -> Result<Run, DriverError> {
    let mut cx = TaskCx::from_waker(Waker::noop());
    driver.set_now(Timestamp(1_000));
    loop {
        match driver.advance(&mut cx) {
            Status::Finished(out) => return Ok((driver.journal(), out)),
            Status::Blocked => {}
            Status::Stopped(e) => return Err(e),
            other => panic!("unexpected status {other:?}"),
        }
        let outstanding = driver.outstanding();
        assert!(!outstanding.is_empty(), "blocked on nothing");
        let pick = (choice_seed.wrapping_mul(6364136223846793005) ^ driver.journal_len() as u64)
            % outstanding.len() as u64;
        let (seq, what) = outstanding[pick as usize].clone();
        let event = match what {
            Outstanding::Call { .. } => {
                let Event::CallScheduled { args, .. } = &driver.journal()[seq.0 as usize] else {
                    panic!("not a call at {seq}");
                };
                let (n,): (u8,) = args.decode().unwrap();
                Event::CallCompleted {
                    scheduled: seq,
                    value: Payload::encode(&(n as u64 * 2)).unwrap(),
                }
            }
            Outstanding::Timer { .. } => Event::TimerFired { started: seq },
            Outstanding::Signal { name } => Event::SignalReceived {
                awaited: seq,
                payload: Payload::encode(&(name.len() as u64 + seq.0 as u64)).unwrap(),
            },
        };
        driver.resolve(event).unwrap();
    }
}
