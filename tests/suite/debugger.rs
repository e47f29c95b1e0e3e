//! The replay debugger: exported journals replay cleanly against the code
//! that made them; a changed workflow is reported at the exact seq and
//! field; all-divergences mode; stepping driven by scripted input; resume of
//! a paused execution after the fix; fork of a failed execution onto fixed
//! code; golden journals that must keep replaying.
//!
//! Workflow variants are compiled into this file as hand-written
//! [`DurableFn`]s sharing one registered name, each in its own
//! [`FunctionRegistry`] — the old and the new code of one deployment.

use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::backends::MemoryBackend;
use stent::debugger::{
    DivergenceReason, ExportExt, InvocationOutcome, JournalExport, ReplayMode, Replayer,
    StepSession,
};
use stent::journal::{Event, Seq};
use stent::{
    BoxFuture, Call, DurableFn, DurableOptions, Error, ExecutionId, ExecutionStatus,
    FunctionRegistry, Stent,
};
use stent_tests::harness::TestWorker;

// ------------------------------------------------------------ the code

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    items: Vec<Item>,
}

fn order() -> Order {
    Order {
        id: 7,
        items: vec![
            Item {
                sku: "apple".into(),
                qty: 1,
            },
            Item {
                sku: "pear".into(),
                qty: 2,
            },
            Item {
                sku: "plum".into(),
                qty: 3,
            },
        ],
    }
}

// The golden journals (tests/golden) name these functions: explicit names
// keep them whatever module path this file is compiled under.
#[stent::durable(name = "debugger::reserve")]
async fn reserve(order: Order) -> Result<String, String> {
    Ok(format!("reservation-{}", order.id))
}

#[stent::durable(name = "debugger::charge")]
async fn charge(order_id: u64, cents: u64) -> Result<String, String> {
    Ok(format!("receipt-{order_id}-{cents}"))
}

#[stent::durable(name = "debugger::ship")]
async fn ship(order_id: u64) -> Result<String, String> {
    Ok(format!("parcel-{order_id}"))
}

#[stent::durable(name = "debugger::notify")]
async fn notify(user: String) -> Result<(), String> {
    let _ = user;
    Ok(())
}

#[stent::durable]
async fn notify_by_sms(user: String) -> Result<(), String> {
    let _ = user;
    Ok(())
}

/// Bodies of `load` that ran (the fork test shows a kept step does not run again).
static LOADS: AtomicU32 = AtomicU32::new(0);

#[stent::durable(name = "debugger::load")]
async fn load(source: String) -> Result<u64, String> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(source.len() as u64 * 10)
}

#[stent::durable(name = "debugger::divide")]
async fn divide(total: u64, by: u64) -> Result<u64, String> {
    total
        .checked_div(by)
        .ok_or_else(|| "division by zero".to_string())
}

#[stent::durable(name = "debugger::price", cached)]
async fn price(sku: String) -> Result<u64, String> {
    Ok(sku.len() as u64 * 100)
}

#[stent::durable]
async fn tally(counts: std::collections::BTreeMap<u32, u32>) -> Result<u32, String> {
    Ok(counts.values().sum())
}

#[stent::durable]
async fn measure(source: String) -> Result<u64, String> {
    Ok(source.len() as u64)
}

/// A hand-written durable function registered as `$name`, so that two
/// variants of one workflow can live in one test binary.
macro_rules! workflow {
    ($def:ident, $name:literal, |$($arg:ident : $ty:ty),*| -> $ok:ty $body:block) => {
        struct $def;

        impl DurableFn for $def {
            type Args = ($($ty,)*);
            type Output = $ok;
            type Error = String;
            const NAME: &'static str = $name;

            fn options() -> DurableOptions<Self::Args> {
                DurableOptions::new()
            }

            fn run(args: Self::Args) -> BoxFuture<Result<$ok, String>> {
                let ($($arg,)*) = args;
                Box::pin(async move $body)
            }
        }
    };
}

workflow!(CheckoutV1, "shop::checkout", |order: Order| -> String {
    let reservation = reserve(order.clone()).await?;
    let cents = 4200;
    let receipt = charge(order.id, cents).await?;
    Stent::context()
        .and_then(|c| c.counters("orders").add(1))
        .map_err(|e| e.to_string())?;
    let parcel = ship(order.id).await?;
    Ok(format!("{reservation} {receipt} {parcel} total={cents}"))
});

// The "new code": one more plum, a new price.
workflow!(CheckoutV2, "shop::checkout", |order: Order| -> String {
    let mut order = order;
    order.items[2].qty += 1;
    let reservation = reserve(order.clone()).await?;
    let cents = 4300;
    let receipt = charge(order.id, cents).await?;
    Stent::context()
        .and_then(|c| c.counters("orders").add(1))
        .map_err(|e| e.to_string())?;
    let parcel = ship(order.id).await?;
    Ok(format!("{reservation} {receipt} {parcel} total={cents}"))
});

// The "new code" charges before it reserves.
workflow!(
    CheckoutSwapped,
    "shop::checkout",
    |order: Order| -> String {
        let cents = 4200;
        let receipt = charge(order.id, cents).await?;
        let reservation = reserve(order.clone()).await?;
        Stent::context()
            .and_then(|c| c.counters("orders").add(1))
            .map_err(|e| e.to_string())?;
        let parcel = ship(order.id).await?;
        Ok(format!("{reservation} {receipt} {parcel} total={cents}"))
    }
);

workflow!(ApprovalV1, "desk::approval", |user: String| -> String {
    notify(user.clone()).await?;
    let answer: String = Stent::wait_for_signal("answer")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{user}: {answer}"))
});

// A bad deployment: SMS instead of the recorded email.
workflow!(ApprovalBroken, "desk::approval", |user: String| -> String {
    notify_by_sms(user.clone()).await?;
    let answer: String = Stent::wait_for_signal("answer")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{user}: {answer}"))
});

workflow!(ReportV1, "etl::report", |source: String| -> u64 {
    let total = load(source).await?;
    // The bug: divides by zero.
    divide(total, 0).await
});

workflow!(ReportFixed, "etl::report", |source: String| -> u64 {
    let total = load(source).await?;
    divide(total, 2).await
});

// Every kind of durable effect, for the golden journals: context defaults
// and writes, clock / uuid / random reads, a cached call, gathered calls, a
// timer and a signal.
workflow!(Tour, "tour::everything", |n: u32| -> String {
    let err = |e: Error| e.to_string();
    let ctx = Stent::context_with(
        stent::ContextDefaults::new()
            .counter("steps", 0)
            .state("phase", "start"),
    )
    .map_err(err)?;
    let now = Stent::now().map_err(err)?;
    let id = Stent::uuid().map_err(err)?;
    let dice = Stent::random().map_err(err)?;
    let unit = price("plum".to_string()).await?;
    let receipts = Stent::gather(vec![
        charge(u64::from(n), unit),
        charge(u64::from(n), 2 * unit),
    ])
    .await
    .into_iter()
    .collect::<Result<Vec<String>, String>>()?;
    ctx.counters("steps").add(2).map_err(err)?;
    Stent::sleep(Duration::from_millis(10)).await.map_err(err)?;
    let go: String = Stent::wait_for_signal("go").await.map_err(err)?;
    ctx.state("phase").set("done").map_err(err)?;
    Ok(format!(
        "{} {go} v{} {} {}",
        receipts.join(","),
        id.get_version_num(),
        (0.0..1.0).contains(&dice),
        now.timestamp() > 0
    ))
});

workflow!(Inventory, "shop::inventory", |bins: u32| -> u32 {
    let counts = (0..bins).map(|b| (b, b * 10)).collect();
    tally(counts).await
});

workflow!(FulfilV1, "shop::fulfil", |order_id: u64| -> String {
    let parcel = ship(order_id).await?;
    let fee = charge(order_id, 100).await?;
    Ok(format!("{parcel} {fee}"))
});

workflow!(FulfilV2, "shop::fulfil", |order_id: u64| -> String {
    let parcel = ship(order_id).await?;
    let fee = charge(order_id, 150).await?;
    Ok(format!("{parcel} {fee}"))
});

workflow!(ParentV1, "shop::parent", |order_id: u64| -> String {
    let done = Call::<FulfilV1>::new((order_id,)).await?;
    Ok(format!("done: {done}"))
});

workflow!(ParentV2, "shop::parent", |order_id: u64| -> String {
    let done = Call::<FulfilV2>::new((order_id,)).await?;
    Ok(format!("done: {done}"))
});

workflow!(WaitChild, "desk::wait_child", |n: u32| -> String {
    let go: String = Stent::wait_for_signal("go")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{n} {go}"))
});

workflow!(WaitParent, "desk::wait_parent", |n: u32| -> String {
    let got = Call::<WaitChild>::new((n,)).await?;
    Ok(format!("parent {got}"))
});

workflow!(TwoLoads, "etl::two_loads", |source: String| -> u64 {
    let a = measure(source.clone()).await?;
    // Real (not durable) waiting between two effects: replay waits for it.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let b = measure(source).await?;
    Ok(a + b)
});

workflow!(TwoLoadsHanging, "etl::two_loads", |source: String| -> u64 {
    let a = measure(source.clone()).await?;
    // Waits for something that never comes, where the journal has more.
    std::future::pending::<()>().await;
    let b = measure(source).await?;
    Ok(a + b)
});

fn leaves() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register(reserve)
        .register(charge)
        .register(ship)
        .register(notify)
        .register(notify_by_sms)
        .register(load)
        .register(divide)
        .register(price)
        .register(tally)
        .register(measure);
    r
}

fn with<D: DurableFn>() -> FunctionRegistry {
    let mut r = leaves();
    r.register_def::<D>();
    r
}

fn executor<D: DurableFn>(backend: &MemoryBackend) -> Stent {
    Stent::builder(backend.clone())
        .function_registry(with::<D>())
        .poll_min_interval(Duration::from_millis(5))
        .build()
}

/// Runs one execution of `D` on `backend` to its end.
async fn run_to_end<D: DurableFn>(backend: &MemoryBackend, args: D::Args) -> ExecutionId {
    let executor = executor::<D>(backend);
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(Call::<D>::new(args)).await.unwrap();
    let _ = executor
        .wait_for::<D::Output, D::Error>(id, Some(Duration::from_secs(20)))
        .await;
    worker.stop().await;
    id
}

async fn checkout_export() -> JournalExport {
    let backend = MemoryBackend::new();
    let id = run_to_end::<CheckoutV1>(&backend, (order(),)).await;
    let export = JournalExport::from_store(&backend, id).await.unwrap();
    assert_eq!(export.record.status, ExecutionStatus::Completed);
    export
}

// ------------------------------------------------------------ replay

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_execution_replays_cleanly_from_the_database_and_from_a_file() {
    let backend = MemoryBackend::new();
    let id = run_to_end::<CheckoutV1>(&backend, (order(),)).await;
    let executor = executor::<CheckoutV1>(&backend);

    let report = Replayer::for_stent(&executor)
        .replay_stored(&executor, id)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.invocations.len(), 4);
    assert_eq!(report.invocations[0].function, "shop::checkout");
    assert_eq!(report.invocations[0].outcome, InvocationOutcome::Clean);
    // The three leaf steps are not re-run: their results are in the root's journal.
    assert!(
        report.invocations[1..]
            .iter()
            .all(|i| i.outcome == InvocationOutcome::Skipped),
        "{report:?}"
    );
    assert!(report.to_string().contains("replays cleanly"), "{report}");

    let dir = tempdir("clean");
    let file = dir.join("checkout.stent");
    let export = JournalExport::from_stent(&executor, id).await.unwrap();
    export.write_to(&file).unwrap();
    let read = JournalExport::read_from(&file).unwrap();
    assert_eq!(read, export);
    assert_eq!(read.args.decode::<(Order,)>().unwrap().0, order());

    // Leaves re-run too when asked (these have no outside effects).
    let all = Replayer::new(with::<CheckoutV1>())
        .rerun_leaves(true)
        .replay(&read)
        .await
        .unwrap();
    assert!(all.is_clean(), "{all}");
    assert!(
        all.invocations
            .iter()
            .all(|i| i.outcome == InvocationOutcome::Clean),
        "{all:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_workflow_is_reported_at_the_exact_seq_and_field() {
    let export = checkout_export().await;
    let report = Replayer::new(with::<CheckoutV2>())
        .replay(&export)
        .await
        .unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.divergences.len(), 1, "{report}");
    let d = &report.divergences[0];
    assert_eq!(d.seq, Seq(1));
    assert_eq!(d.function, "shop::checkout");
    assert_eq!(d.invocation, export.execution.root_invocation());
    assert_eq!(d.reason, DivergenceReason::Mismatch);
    assert!(
        matches!(&d.recorded, Some(Event::CallScheduled { function, .. }) if function == "debugger::reserve")
    );
    assert!(
        matches!(&d.asked, Some(Event::CallScheduled { function, .. }) if function == "debugger::reserve")
    );
    let diffs: Vec<String> = d.diffs.iter().map(ToString::to_string).collect();
    assert_eq!(diffs, vec!["args[0].items[2].qty: 3 -> 4"]);
    let text = report.to_string();
    assert!(text.contains("seq 1"), "{text}");
    assert!(text.contains("args[0].items[2].qty: 3 -> 4"), "{text}");
    assert_eq!(report.invocations[0].outcome, InvocationOutcome::Diverged);
    // Stopped at the first: nothing after it was replayed.
    assert!(
        report.invocations[1..]
            .iter()
            .all(|i| i.outcome == InvocationOutcome::NotReached)
    );
}

/// Swapped calls read as a reorder, with where the journal holds the call
/// the code now makes first, and no field diff between unrelated calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_calls_are_reported_as_a_reorder() {
    let export = checkout_export().await;
    let report = Replayer::new(with::<CheckoutSwapped>())
        .replay(&export)
        .await
        .unwrap();
    let d = report.first_divergence().expect("a divergence");
    assert_eq!(d.seq, Seq(1));
    // seq 1 reserve, 2 its result, 3 charge.
    assert_eq!(
        d.reason,
        DivergenceReason::Reordered {
            recorded_at: Seq(3)
        }
    );
    assert!(d.diffs.is_empty(), "{:?}", d.diffs);
    let text = report.to_string();
    assert!(text.contains("calls reordered"), "{text}");
    assert!(text.contains("at seq 3"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mode_goes_on_with_the_recorded_answers_and_lists_every_divergence() {
    let export = checkout_export().await;
    let report = Replayer::new(with::<CheckoutV2>())
        .mode(ReplayMode::All)
        .replay(&export)
        .await
        .unwrap();
    let found: Vec<(u32, Vec<String>)> = report
        .divergences
        .iter()
        .map(|d| (d.seq.0, d.diffs.iter().map(ToString::to_string).collect()))
        .collect();
    // seq 0 started, 1 reserve, 2 its result, 3 charge, 4 its result,
    // 5 counter, 6 ship, 7 its result, 8 the final result.
    assert_eq!(
        found,
        vec![
            (1, vec!["args[0].items[2].qty: 3 -> 4".to_string()]),
            (3, vec!["args[1]: 4200 -> 4300".to_string()]),
            (
                8,
                vec![
                    r#"result: "reservation-7 receipt-7-4200 parcel-7 total=4200" -> "reservation-7 receipt-7-4200 parcel-7 total=4300""#
                        .to_string()
                ]
            ),
        ],
        "{report}"
    );
    assert_eq!(report.divergences[2].reason, DivergenceReason::Result);
    assert_eq!(report.invocations[0].outcome, InvocationOutcome::Diverged);
    assert!(report.to_string().contains("3 divergence(s)"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_serialized_execution_replays_with_its_serializer() {
    let backend = MemoryBackend::new();
    let executor = Stent::builder(backend.clone())
        .function_registry(with::<Inventory>())
        .serializer(stent::journal::Serializer::Json)
        .build();
    let worker = TestWorker::start(&executor).await;
    let id = executor
        .dispatch(Call::<Inventory>::new((3,)))
        .await
        .unwrap();
    let total = executor
        .wait_for::<u32, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    worker.stop().await;
    assert_eq!(total, Ok(30));
    // The executor's serializer is used: clean.
    let report = Replayer::for_stent(&executor)
        .replay_stored(&executor, id)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    // With CBOR, the integer map keys encode differently: another call key.
    let export = JournalExport::from_store(&backend, id).await.unwrap();
    let report = Replayer::new(with::<Inventory>())
        .replay(&export)
        .await
        .unwrap();
    assert_eq!(report.first_divergence().map(|d| d.seq), Some(Seq(1)));
    let report = Replayer::new(with::<Inventory>())
        .serializer(stent::journal::Serializer::Json)
        .replay(&export)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_workflow_is_replayed_against_its_own_journal() {
    let backend = MemoryBackend::new();
    let executor = Stent::builder(backend.clone())
        .function_registry({
            let mut r = with::<ParentV1>();
            r.register_def::<FulfilV1>();
            r
        })
        .build();
    let worker = TestWorker::start(&executor).await;
    let id = executor
        .dispatch(Call::<ParentV1>::new((9,)))
        .await
        .unwrap();
    executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    worker.stop().await;
    let export = JournalExport::from_store(&backend, id).await.unwrap();

    let mut v2 = with::<ParentV2>();
    v2.register_def::<FulfilV2>();
    let report = Replayer::new(v2).replay(&export).await.unwrap();
    let outcomes: Vec<(&str, &InvocationOutcome)> = report
        .invocations
        .iter()
        .map(|i| (i.function.as_str(), &i.outcome))
        .collect();
    // The root still matches (it gets the child's recorded result); the
    // child diverges in its own journal; its leaves are not re-run.
    assert_eq!(outcomes[0], ("shop::parent", &InvocationOutcome::Clean));
    assert_eq!(outcomes[1], ("shop::fulfil", &InvocationOutcome::Diverged));
    let d = report.first_divergence().unwrap();
    assert_eq!(d.function, "shop::fulfil");
    assert_eq!(d.seq, Seq(3));
    assert_eq!(d.diffs[0].to_string(), "args[1]: 100 -> 150");
    assert_eq!(report.invocations[1].invocation, d.invocation);
}

// ------------------------------------------------------------ stepping

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepping_is_driven_by_scripted_input() {
    let export = checkout_export().await;

    // n at seq 1, print at seq 3 then quit.
    let session = Arc::new(Mutex::new(
        StepSession::new(Cursor::new("n\np\nq\n"), Vec::new()).echo(true),
    ));
    let report = Replayer::new(with::<CheckoutV1>())
        .stepper(session.clone())
        .replay(&export)
        .await
        .unwrap();
    assert!(report.quit);
    assert!(!report.is_clean());
    assert_eq!(report.invocations[0].outcome, InvocationOutcome::Quit);
    let (steps, out) = {
        let session = session.lock().unwrap();
        (
            session.steps(),
            String::from_utf8(session.output().clone()).unwrap(),
        )
    };
    assert_eq!(steps, 2);
    assert!(out.contains("shop::checkout"), "{out}");
    assert!(out.contains("seq 1 ── matches"), "{out}");
    assert!(
        out.contains("code asks:  call_scheduled debugger::reserve({id: 7"),
        "{out}"
    );
    assert!(
        out.contains(r#"answer:     call_completed (seq 1) "reservation-7""#),
        "{out}"
    );
    assert!(out.contains("seq 3 ── matches"), "{out}");
    assert!(
        out.contains("(q)uit > n\n"),
        "scripted commands are echoed: {out}"
    );
    assert!(out.contains("      call_key: "), "{out}");
    assert!(out.contains("      child: "), "{out}");
    assert!(!out.contains("seq 5"), "quit at seq 3: {out}");

    // Against the new code, with a breakpoint: divergences stop the session
    // even while continuing; the breakpoint too; input ending continues.
    let session = Arc::new(Mutex::new(StepSession::new(Cursor::new("c\n"), Vec::new())));
    let report = Replayer::new(with::<CheckoutV2>())
        .mode(ReplayMode::All)
        .stepper(session.clone())
        .break_at(Seq(5))
        .replay(&export)
        .await
        .unwrap();
    assert!(!report.quit);
    assert_eq!(report.divergences.len(), 3);
    let session = session.lock().unwrap();
    let out = String::from_utf8(session.output().clone()).unwrap();
    assert!(out.contains("seq 1 ── DIVERGES"), "{out}");
    assert!(
        out.contains("changed:    args[0].items[2].qty: 3 -> 4"),
        "{out}"
    );
    assert!(out.contains("seq 3 ── DIVERGES"), "{out}");
    assert!(out.contains("seq 5 ── matches"), "{out}");
    assert!(out.contains("(end of input: continuing)"), "{out}");
    assert!(out.contains("seq 8 ── DIVERGES"), "{out}");
    // Seqs that match and are no breakpoint are not shown while continuing.
    assert!(!out.contains("seq 6"), "{out}");
}

// ------------------------------------------------------------ repair

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_execution_resumes_after_the_fix() {
    let backend = MemoryBackend::new();

    // The first deployment notifies and waits for an answer.
    let v1 = executor::<ApprovalV1>(&backend);
    let worker = TestWorker::start(&v1).await;
    let id = v1
        .dispatch(Call::<ApprovalV1>::new(("ada".to_string(),)))
        .await
        .unwrap();
    wait_until_journaled(&v1, id, "signal_awaited").await;
    worker.stop().await;

    // A bad deployment replays it and pauses.
    let broken = executor::<ApprovalBroken>(&backend);
    let worker = TestWorker::start(&broken).await;
    broken.send_signal(id, "answer", &"yes").await.unwrap();
    let err = broken
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NonDeterminism { .. }), "{err}");
    worker.stop().await;

    // The debugger explains the pause…
    let report = Replayer::for_stent(&broken)
        .replay_stored(&broken, id)
        .await
        .unwrap();
    let d = report.first_divergence().expect("a divergence");
    assert_eq!(d.seq, Seq(1));
    assert!(
        report.to_string().contains("debugger::notify_by_sms"),
        "{report}"
    );
    // …and confirms the fix (the journal ends where the pause left it).
    let fixed = executor::<ApprovalV1>(&backend);
    let report = Replayer::for_stent(&fixed)
        .replay_stored(&fixed, id)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(matches!(
        report.invocations[0].outcome,
        InvocationOutcome::CaughtUp { .. }
    ));

    // Resume on the fixed code: the signal sent meanwhile is delivered.
    fixed.resume(id).await.unwrap();
    assert_eq!(
        fixed.state_of(id).await.unwrap().state,
        ExecutionStatus::Running
    );
    assert_eq!(fixed.state_of(id).await.unwrap().pause_report, None);
    let worker = TestWorker::start(&fixed).await;
    let answer = fixed
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(answer, Ok("ada: yes".to_string()));
    worker.stop().await;

    // Only a paused execution resumes.
    let err = fixed.resume(id).await.unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err}");
    assert!(err.to_string().contains("not paused"), "{err}");
    let err = fixed.resume(ExecutionId::new_random()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_resumes_a_failed_execution_on_fixed_code() {
    let backend = MemoryBackend::new();
    let before = LOADS.load(Ordering::SeqCst);
    let id = run_to_end::<ReportV1>(&backend, ("abcd".to_string(),)).await;
    let old = executor::<ReportV1>(&backend);
    assert_eq!(
        old.state_of(id).await.unwrap().state,
        ExecutionStatus::Failed
    );
    assert_eq!(LOADS.load(Ordering::SeqCst), before + 1);

    // The fixed code diverges from the failed run at seq 3 (the division).
    let fixed = executor::<ReportFixed>(&backend);
    let report = Replayer::for_stent(&fixed)
        .replay_stored(&fixed, id)
        .await
        .unwrap();
    assert_eq!(report.first_divergence().map(|d| d.seq), Some(Seq(3)));
    assert_eq!(
        report.divergences[0]
            .diffs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["args[1]: 0 -> 2"]
    );

    // Fork before it: the load is kept, the rest runs on the fixed code.
    let forked = fixed.fork(id, Seq(3)).await.unwrap();
    assert_ne!(forked, id);
    assert_eq!(
        fixed.state_of(forked).await.unwrap().forked_from,
        Some(stent::journal::ForkOrigin {
            execution: id,
            at: Seq(3)
        })
    );
    let worker = TestWorker::start(&fixed).await;
    let result = fixed
        .wait_for::<u64, String>(forked, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    worker.stop().await;
    assert_eq!(result, Ok(20));
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        before + 1,
        "the kept load did not run again"
    );
    let journal = JournalExport::from_stent(&fixed, forked).await.unwrap();
    let root = journal.root().unwrap().events().unwrap();
    assert!(
        matches!(&root[1], Event::CallScheduled { function, .. } if function == "debugger::load")
    );
    assert!(
        matches!(&root[3], Event::CallScheduled { function, .. } if function == "debugger::divide")
    );
    // The original is left as it was.
    assert_eq!(
        old.state_of(id).await.unwrap().state,
        ExecutionStatus::Failed
    );
    // The fork replays cleanly on the fixed code.
    let report = Replayer::for_stent(&fixed)
        .replay_stored(&fixed, forked)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");

    for bad in [0, 6, 99] {
        let err = fixed.fork(id, Seq(bad)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("must be between 1 and"), "{err}");
    }
    let err = fixed
        .fork(ExecutionId::new_random(), Seq(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_reruns_the_calls_its_prefix_left_unanswered() {
    let backend = MemoryBackend::new();
    let executor = Stent::builder(backend.clone())
        .function_registry({
            let mut r = with::<WaitParent>();
            r.register_def::<WaitChild>();
            r
        })
        .poll_min_interval(Duration::from_millis(5))
        .build();
    let worker = TestWorker::start(&executor).await;
    let id = executor
        .dispatch(Call::<WaitParent>::new((4,)))
        .await
        .unwrap();
    // The child waits for its signal; the parent's journal holds the call
    // (seq 1) and no result.
    let child = stent::journal::InvocationId::child_of(id.root_invocation(), Seq(1));
    for _ in 0..4000 {
        let rows = executor
            .backend()
            .read_journal(child, Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == "signal_awaited") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let forked = executor.fork(id, Seq(2)).await.unwrap();
    // The fork's child is its own, waiting for a signal to the fork.
    executor.send_signal(forked, "go", &"now").await.unwrap();
    let result = executor
        .wait_for::<String, String>(forked, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(result, Ok("parent 4 now".to_string()));
    // The original still waits for its own signal.
    assert_eq!(
        executor.state_of(id).await.unwrap().state,
        ExecutionStatus::Running
    );
    executor.send_signal(id, "go", &"later").await.unwrap();
    let original = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(original, Ok("parent 4 later".to_string()));
    worker.stop().await;
    let report = Replayer::for_stent(&executor)
        .replay_stored(&executor, forked)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_waiting_on_real_io_is_waited_for_and_code_that_never_resumes_is_stuck() {
    let backend = MemoryBackend::new();
    let id = run_to_end::<TwoLoads>(&backend, ("abc".to_string(),)).await;
    let export = JournalExport::from_store(&backend, id).await.unwrap();
    assert_eq!(export.record.status, ExecutionStatus::Completed);
    let report = Replayer::new(with::<TwoLoads>())
        .replay(&export)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");

    let report = Replayer::new(with::<TwoLoadsHanging>())
        .io_timeout(Duration::from_millis(50))
        .replay(&export)
        .await
        .unwrap();
    let d = report.first_divergence().expect("stuck");
    assert_eq!(d.reason, DivergenceReason::Stuck);
    assert_eq!(d.seq, Seq(3));
    assert!(
        report
            .to_string()
            .contains("the code waits for something else"),
        "{report}"
    );
}

// ------------------------------------------------------------ golden

/// Exported journals committed under `tests/golden/` must keep replaying
/// against this code: the export format and the journal format stay readable.
#[tokio::test]
async fn golden_journals_keep_replaying() {
    let mut registry = leaves();
    registry
        .register_def::<CheckoutV1>()
        .register_def::<ApprovalV1>()
        .register_def::<ReportFixed>()
        .register_def::<Tour>();
    stent::debugger::assert_journals_replay(registry, golden_dir()).await;
}

#[tokio::test]
async fn golden_journals_catch_a_changed_workflow() {
    let mut registry = leaves();
    registry
        .register_def::<CheckoutV2>()
        .register_def::<ApprovalV1>()
        .register_def::<ReportFixed>()
        .register_def::<Tour>();
    let reports = stent::debugger::check_journals(registry, golden_dir())
        .await
        .unwrap();
    let (path, report) = reports
        .iter()
        .find(|(p, _)| p.ends_with("checkout.stent"))
        .expect("the checkout golden journal");
    assert!(!report.is_clean(), "{}", path.display());
    let task = tokio::spawn(async move {
        let mut registry = leaves();
        registry.register_def::<CheckoutV2>();
        let dir = tempdir("golden-changed");
        std::fs::copy(
            golden_dir().join("checkout.stent"),
            dir.join("checkout.stent"),
        )
        .unwrap();
        let result = stent::debugger::check_journals(registry.clone(), &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(result.unwrap().len(), 1);
        // The same folder again, through the asserting helper.
        let dir = tempdir("golden-changed");
        std::fs::copy(
            golden_dir().join("checkout.stent"),
            dir.join("checkout.stent"),
        )
        .unwrap();
        let cleanup = RemoveOnDrop(dir.clone());
        stent::debugger::assert_journals_replay(registry, dir).await;
        drop(cleanup);
    });
    let panic = task.await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("checkout.stent"), "{message}");
    assert!(message.contains("seq 1"), "{message}");
    assert!(
        message.contains("args[0].items[2].qty: 3 -> 4"),
        "{message}"
    );
}

#[tokio::test]
async fn unreadable_exports_are_typed_errors() {
    let dir = tempdir("bad-export");
    let file = dir.join("bad.stent");
    std::fs::write(&file, b"this is not cbor").unwrap();
    let err = JournalExport::read_from(&file).unwrap_err();
    assert!(
        matches!(
            &err,
            stent::debugger::DebugError::Export {
                source: stent::debugger::ExportError::NotAnExport { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bad.stent"), "{err}");
    let err = JournalExport::read_from(dir.join("missing.stent")).unwrap_err();
    assert!(
        matches!(err, stent::debugger::DebugError::Io { .. }),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records every golden journal afresh with today's code, and checks the
/// new recordings replay cleanly like the committed ones. The recordings go
/// to a scratch folder; with `STENT_UPDATE_GOLDEN=1` those missing from
/// `tests/golden/` are added there (recorded ones are kept: they are the
/// point): `STENT_UPDATE_GOLDEN=1 cargo test -p stent-tests --test suite
/// debugger::golden_journals_are_recorded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_journals_are_recorded_and_replay_cleanly() {
    let dir = golden_dir();
    let scratch = tempdir("golden-recorded");
    let _cleanup = RemoveOnDrop(scratch.clone());
    let new_golden = |name: &str| -> std::path::PathBuf {
        let path = dir.join(name);
        if std::env::var_os("STENT_UPDATE_GOLDEN").is_some() && !path.exists() {
            path
        } else {
            scratch.join(name)
        }
    };

    let backend = MemoryBackend::new();
    let id = run_to_end::<CheckoutV1>(&backend, (order(),)).await;
    JournalExport::from_store(&backend, id)
        .await
        .unwrap()
        .write_to(new_golden("checkout.stent"))
        .unwrap();

    let id = run_to_end::<ReportFixed>(&backend, ("golden".to_string(),)).await;
    JournalExport::from_store(&backend, id)
        .await
        .unwrap()
        .write_to(new_golden("report.stent"))
        .unwrap();

    let v1 = executor::<ApprovalV1>(&backend);
    let worker = TestWorker::start(&v1).await;
    let id = v1
        .dispatch(Call::<ApprovalV1>::new(("grace".to_string(),)))
        .await
        .unwrap();
    wait_until_journaled(&v1, id, "signal_awaited").await;
    v1.send_signal(id, "answer", &"approved").await.unwrap();
    v1.wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    worker.stop().await;
    JournalExport::from_store(&backend, id)
        .await
        .unwrap()
        .write_to(new_golden("approval.stent"))
        .unwrap();

    // Twice: the second run answers the cached call from the cache.
    let tour = executor::<Tour>(&backend);
    let worker = TestWorker::start(&tour).await;
    for file in ["tour.stent", "tour-cached.stent"] {
        let id = tour.dispatch(Call::<Tour>::new((3,))).await.unwrap();
        wait_until_journaled(&tour, id, "signal_awaited").await;
        tour.send_signal(id, "go", &"go").await.unwrap();
        tour.wait_for::<String, String>(id, Some(Duration::from_secs(20)))
            .await
            .unwrap()
            .unwrap();
        JournalExport::from_store(&backend, id)
            .await
            .unwrap()
            .write_to(new_golden(file))
            .unwrap();
    }
    worker.stop().await;

    let mut registry = leaves();
    registry
        .register_def::<CheckoutV1>()
        .register_def::<ApprovalV1>()
        .register_def::<ReportFixed>()
        .register_def::<Tour>();
    stent::debugger::assert_journals_replay(registry, &scratch).await;
}

// ------------------------------------------------------------ helpers

/// Removes a scratch folder when dropped (also while a test panics).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stent-debugger-{name}-{}",
        ExecutionId::new_random()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn wait_until_journaled(executor: &Stent, id: ExecutionId, kind: &str) {
    for _ in 0..4000 {
        let rows = executor
            .backend()
            .read_journal(id.root_invocation(), Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("execution {id} never journaled {kind}");
}
