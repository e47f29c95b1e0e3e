//! Patches over random workflows: a journal recorded by the old code replays
//! on the patched code (taking the old branch everywhere), a journal of the
//! patched code replays on the deprecated and on the patch-free code
//! (markers accepted or stepped over), and recovering from any crash point
//! of a patched run gives the same journal.

mod common;

use common::{call, id, run_to_end, started};
use proptest::prelude::*;
use stent_journal::{Event, Failure, Payload};
use stent_replay::{Context, Driver, DriverError};

#[derive(Debug, Clone)]
enum Step {
    Call(u8),
    /// A change behind patch `n`: the new branch calls `100 + n`, the old
    /// one `200 + n`.
    Patch(u8),
}

/// Which code runs the patch points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    /// Before the patches: the old branch, no patch call.
    Old,
    /// `patched(id)` chooses.
    Patched,
    /// `deprecate_patch(id)`, then the new branch.
    Deprecated,
    /// The new branch, no patch call.
    Removed,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..50).prop_map(Step::Call),
        (0u8..3).prop_map(Step::Patch),
    ]
}

fn workflow(program: Vec<Step>, code: Code) -> stent_replay::InvocationFuture {
    Box::pin(async move {
        let ctx = Context::current().expect("driver context");
        let mut acc: u64 = 0;
        for step in program {
            let n = match step {
                Step::Call(n) => n,
                Step::Patch(p) => {
                    let id = format!("patch-{p}");
                    let new = match code {
                        Code::Old => false,
                        Code::Patched => ctx.patched(&id, false),
                        Code::Deprecated => {
                            ctx.patched(&id, true);
                            true
                        }
                        Code::Removed => true,
                    };
                    if new { 100 + p } else { 200 + p }
                }
            };
            acc = acc.wrapping_mul(31).wrapping_add(call(&ctx, n).await);
        }
        Payload::encode(&acc).map_err(|e| Failure::Aborted {
            message: e.to_string(),
        })
    })
}

fn run(
    journal: Vec<Event>,
    program: &[Step],
    code: Code,
) -> Result<(Vec<Event>, Payload), DriverError> {
    let driver = Driver::new(id(), journal, workflow(program.to_vec(), code)).unwrap();
    run_to_end(driver, 0).map(|(journal, out)| (journal, out.expect("the workflow returns Ok")))
}

fn markers(journal: &[Event]) -> usize {
    journal
        .iter()
        .filter(|e| matches!(e, Event::PatchMarker { .. }))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn old_journals_replay_on_the_patched_code_and_new_ones_on_later_code(
        program in prop::collection::vec(step(), 0..10),
    ) {
        let patches = program.iter().filter(|s| matches!(s, Step::Patch(_))).count();

        // Recorded by the old code, replayed whole by the patched code: the
        // old branch every time, nothing new recorded.
        let (old, old_out) = run(vec![started()], &program, Code::Old).unwrap();
        let (replayed, out) = run(old.clone(), &program, Code::Patched).unwrap();
        prop_assert_eq!(&replayed, &old);
        prop_assert_eq!(&out, &old_out);

        // Recorded by the patched code: one marker per patch point.
        let (new, new_out) = run(vec![started()], &program, Code::Patched).unwrap();
        prop_assert_eq!(markers(&new), patches);
        for code in [Code::Patched, Code::Deprecated, Code::Removed] {
            let (replayed, out) = run(new.clone(), &program, code).unwrap();
            prop_assert_eq!(&replayed, &new, "{:?}", code);
            prop_assert_eq!(&out, &new_out);
        }

        // Any crash point of the patched run recovers to the same journal.
        for crash_at in 1..=new.len() {
            let (journal, out) = run(new[..crash_at].to_vec(), &program, Code::Patched).unwrap();
            prop_assert_eq!(&journal, &new, "crash at {}", crash_at);
            prop_assert_eq!(&out, &new_out);
        }

        // The old journal on the deprecated code stops at the first patch
        // point, naming the patch.
        let first = program.iter().find_map(|s| match s {
            Step::Patch(p) => Some(format!("patch-{p}")),
            Step::Call(_) => None,
        });
        match (run(old.clone(), &program, Code::Deprecated), first) {
            (Err(DriverError::Diverged(d)), Some(patch)) => {
                prop_assert_eq!(d.asked, Some(Event::PatchMarker { patch }));
            }
            (Ok((journal, _)), None) => prop_assert_eq!(journal, old),
            (other, first) => prop_assert!(false, "{:?} for first patch {:?}", other.map(|r| r.1), first),
        }
    }
}

#[test]
fn a_patch_in_a_journal_of_the_old_code_that_ends_there_takes_the_new_branch() {
    // The old code recorded one call and waits: the journal ends where the
    // patched code asks. Nothing was decided there yet, so the new branch.
    let program = vec![Step::Call(1), Step::Patch(0)];
    let (old, _) = run(vec![started()], &program[..1], Code::Old).unwrap();
    let prefix: Vec<Event> = old
        .into_iter()
        .filter(|e| !e.kind().is_terminal())
        .collect();
    let (journal, _) = run(prefix, &program, Code::Patched).unwrap();
    assert!(matches!(&journal[3], Event::PatchMarker { patch } if patch == "patch-0"));
    assert!(
        matches!(&journal[4], Event::CallScheduled { args, .. } if args.decode::<(u8,)>().unwrap() == (100,))
    );
}
