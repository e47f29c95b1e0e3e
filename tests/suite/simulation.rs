//! `stent::testing` over the engine's own scenarios: sequential steps,
//! fan-out, nested calls, durable timers, signals (with and without a
//! timeout), typed errors, context writes, `cached` and `idempotent`
//! functions across executions — each run clean and under generated fault
//! plans. And proof that the harness catches a workflow that is not
//! deterministic, with a seed that reproduces it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use stent::testing::proptest::prelude::*;
use stent::testing::{Faults, Simulation};
use stent::{RetryPolicy, Stent};

/// Cases per scenario (each: one clean and one faulty run).
const CASES: u32 = 500;

fn policy() -> RetryPolicy {
    RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(200))
}

#[stent::durable(retry_policy = policy())]
async fn step(i: u64) -> Result<u64, String> {
    Ok(i * 3 + 1)
}

#[stent::durable]
async fn refuse(x: u64) -> Result<u64, String> {
    Err(format!("refused {x}"))
}

#[stent::durable]
async fn sequence(n: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..n {
        acc += step(i).await?;
    }
    Ok(acc)
}

#[stent::durable(retry_policy = policy())]
async fn fan_out(n: u64) -> Result<Vec<u64>, String> {
    let all = Stent::gather((0..n).map(step)).await;
    all.into_iter().collect()
}

#[stent::durable]
async fn mapped(items: Vec<u64>) -> Result<u64, String> {
    let all = Stent::map(step, items).await?;
    Ok(all.into_iter().sum())
}

#[stent::durable]
async fn nested(n: u64) -> Result<u64, String> {
    let a = sequence(n).await?;
    let b = fan_out(n).await?;
    Ok(a + b.into_iter().sum::<u64>())
}

#[stent::durable]
async fn timers(minutes: u64, steps: u64) -> Result<u64, String> {
    let mut acc = 0;
    for i in 0..steps {
        Stent::sleep(Duration::from_secs(60 * minutes))
            .await
            .map_err(|e| e.to_string())?;
        acc += step(i).await?;
    }
    Ok(acc)
}

#[stent::durable]
async fn approval(amount: u64) -> Result<String, String> {
    let first = step(amount).await?;
    let approver: String = Stent::wait_for_signal("approve")
        .await
        .map_err(|e| e.to_string())?;
    let note: u64 = Stent::wait_for_signal("note")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{first} approved by {approver} ({note})"))
}

#[stent::durable]
async fn twice_waited() -> Result<Vec<u32>, String> {
    let a: u32 = Stent::wait_for_signal("tick")
        .await
        .map_err(|e| e.to_string())?;
    let b: u32 = Stent::wait_for_signal("tick")
        .await
        .map_err(|e| e.to_string())?;
    Ok(vec![a, b])
}

#[stent::durable]
async fn with_timeout(n: u64) -> Result<String, String> {
    let got: Option<String> = Stent::wait_for_signal_timeout("answer", "1h")
        .await
        .map_err(|e| e.to_string())?;
    let s = step(n).await?;
    Ok(format!("{got:?} {s}"))
}

#[stent::durable]
async fn handles_errors(x: u64) -> Result<String, String> {
    let caught = match refuse(x).await {
        Ok(_) => "impossible".to_string(),
        Err(e) => format!("caught: {e}"),
    };
    if x % 2 == 0 {
        Err(format!("{caught}; and failing on purpose"))
    } else {
        Ok(caught)
    }
}

#[stent::durable]
async fn counting(n: u64) -> Result<u64, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    for i in 0..n {
        let v = step(i).await?;
        ctx.counters("sum")
            .add(v as f64)
            .map_err(|e| e.to_string())?;
        ctx.state("last").set(&v).map_err(|e| e.to_string())?;
    }
    Ok(n)
}

#[stent::durable(cached)]
async fn expensive(x: u64) -> Result<u64, String> {
    Ok(x * x)
}

#[stent::durable(idempotent, retry_policy = policy())]
async fn pay(order: u64) -> Result<String, String> {
    Ok(format!("paid-{order}"))
}

#[stent::durable]
async fn shop(order: u64) -> Result<String, String> {
    let price = expensive(order).await?;
    let receipt = pay(order).await?;
    Ok(format!("{receipt} for {price}"))
}

/// A workflow mid-change: its new branch behind a patch, with a step, a
/// signal and a sleep after it.
#[stent::durable]
async fn patched_shop(order: u64) -> Result<String, String> {
    let s = |e: stent::Error| e.to_string();
    let price = if Stent::patched("bulk-discount").map_err(s)? {
        expensive(order / 2).await?
    } else {
        expensive(order).await?
    };
    let note: String = Stent::wait_for_signal("packed").await.map_err(s)?;
    Stent::sleep("10m").await.map_err(s)?;
    Stent::deprecate_patch("gift-wrap").map_err(s)?;
    let receipt = pay(order).await?;
    Ok(format!("{receipt} for {price}, {note}"))
}

fn sim() -> Simulation {
    Simulation::new().cases(CASES)
}

#[test]
fn patched_workflows_under_faults() {
    let summary = sim()
        .signal("packed", &"boxed")
        .check(patched_shop, (0u64..100,));
    assert!(summary.faults_injected > 0, "{summary:?}");
}

#[test]
fn sequential_steps() {
    sim().check(sequence, (0u64..6,));
}

#[test]
fn fan_out_with_gather_and_map() {
    sim().check(fan_out, (0u64..6,));
    sim().check(mapped, (prop::collection::vec(0u64..50, 0..6),));
}

#[test]
fn nested_invocations() {
    sim().cases(CASES / 2).check(nested, (0u64..4,));
}

#[test]
fn durable_timers() {
    sim().check(timers, (0u64..90, 0u64..3));
}

#[test]
fn signals_late_and_duplicated() {
    sim()
        .signal("approve", &"ada")
        .signal("note", &7u64)
        .check(approval, (0u64..100,));
    // A name waited for twice is never duplicated by the plan.
    sim()
        .cases(CASES / 2)
        .signal("tick", &1u32)
        .signal("tick", &2u32)
        .check(twice_waited, Just(()));
}

#[test]
fn signal_timeouts() {
    // Answered well before the timeout...
    sim()
        .signal("answer", &"yes")
        .max_signal_delay(Duration::from_secs(600))
        .check(with_timeout, (0u64..10,));
    // ...or never: the timeout fires, in every run.
    sim().cases(CASES / 2).check(with_timeout, (0u64..10,));
}

#[test]
fn typed_errors() {
    sim().check(handles_errors, (0u64..1000,));
}

#[test]
fn context_writes() {
    sim().check(counting, (0u64..5,));
}

#[test]
fn cached_and_idempotent_across_executions() {
    sim().executions(3).check(shop, (0u64..1000,));
}

#[test]
fn each_fault_kind_alone() {
    for faults in [
        Faults::none().crashes(true),
        Faults::none().zombies(true),
        Faults::none().transient_failures(true),
        Faults::none().clock_jumps(true),
        Faults::none().storage(true),
    ] {
        let summary = sim()
            .cases(CASES / 4)
            .faults(faults)
            .check(nested, (1u64..4,));
        assert!(summary.faults_injected > 0, "{faults:?} injected nothing");
        if faults.zombies {
            // The stalled worker's late writes were refused, not applied.
            assert!(summary.writes_refused > 0, "{summary:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// A workflow that is not deterministic: it counts its own body runs in
// process memory (not journaled) and takes another path when replayed.

static BODY_RUNS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

#[stent::durable]
async fn careless(n: u64) -> Result<u64, String> {
    // Stable per execution (journaled), so the count is per execution.
    let me = Stent::uuid().map_err(|e| e.to_string())?;
    let runs = {
        let mut all = BODY_RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let r = all.entry(me.to_string()).or_default();
        *r += 1;
        *r
    };
    let a = step(n).await?;
    Stent::sleep("1h").await.map_err(|e| e.to_string())?;
    // The bug: a replay (after a crash or an eviction) sees runs > 1.
    let b = if runs == 1 {
        step(a).await?
    } else {
        expensive(a).await?
    };
    Ok(a + b)
}

#[test]
fn catches_a_non_deterministic_workflow_and_replays_it_from_the_seed() {
    let sim = Simulation::new().cases(200).seed(11);
    let failure = sim
        .run(careless, (0u64..100,))
        .expect_err("the harness must catch the replay-dependent branch");
    let report = failure.to_string();
    assert!(report.contains(&failure.seed.to_string()), "{report}");
    // Shrunk to the one fault the bug needs: any replay shows it.
    assert_eq!(failure.plan.faults.len(), 1, "{report}");
    // Values read as JSON-like text, not as CBOR trees.
    assert!(!report.contains("Payload("), "{report}");
    assert!(!report.contains("Integer("), "{report}");
    assert!(
        failure.problems.iter().any(|p| p.contains("paused")
            || p.contains("differ")
            || p.contains("ended differently")),
        "{report}"
    );
    // The seed alone reproduces it.
    let again = sim
        .replay(careless, (0u64..100,), failure.seed)
        .expect_err("replaying the seed must fail again");
    assert_eq!(again.seed, failure.seed);
    assert_eq!(again.plan, failure.plan, "{again}");
}

// ---------------------------------------------------------------------------
// What the harness reports besides a divergence.

#[stent::durable]
async fn waits_forever() -> Result<u32, String> {
    Stent::wait_for_signal::<u32>("never-sent")
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn reports_a_stuck_execution() {
    let failure = Simulation::new()
        .cases(3)
        .time_limit(Duration::from_secs(3600))
        .run(waits_forever, Just(()))
        .expect_err("an execution that never ends is stuck");
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.contains("clean run") || p.contains("stuck")),
        "{failure}"
    );
    assert!(failure.to_string().contains("stuck"), "{failure}");
}

fn once() -> RetryPolicy {
    RetryPolicy::default().max_attempts(2).initial_delay(Duration::from_millis(10))
}

#[stent::durable(retry_policy = once())]
async fn always_panics(x: u64) -> Result<u64, String> {
    if x < u64::MAX {
        panic!("a bug in always_panics({x})");
    }
    Ok(x)
}

#[stent::durable]
async fn calls_a_panicking_step(x: u64) -> Result<u64, String> {
    always_panics(x).await
}

#[test]
fn reports_a_dead_letter() {
    let failure = Simulation::new()
        .cases(2)
        .run(calls_a_panicking_step, (0u64..10,))
        .expect_err("a dead-lettered task fails the case");
    assert!(failure.to_string().contains("dead-lettered"), "{failure}");
    // It fails with no faults at all: the report blames none.
    assert_eq!(
        failure.plan,
        stent::testing::FaultPlan::default(),
        "{failure}"
    );
    assert_eq!(failure.plan_description, "no faults", "{failure}");
    assert!(failure.to_string().contains("clean run"), "{failure}");
}

#[tokio::test]
async fn check_works_from_inside_a_tokio_runtime() {
    // `check` builds its own runtime; inside one it runs on a helper thread.
    let summary = sim().cases(20).check(sequence, (0u64..4,));
    assert_eq!(summary.cases, 20);
}

#[test]
fn a_custom_registry() {
    let mut registry = stent::FunctionRegistry::new();
    registry.register(sequence).register(step);
    sim()
        .cases(50)
        .function_registry(registry)
        .check(sequence, (0u64..4,));
}

#[test]
fn a_seed_injects_the_same_faults_every_time() {
    // Every choice comes from the seed and time is virtual: two runs of the
    // same cases make the same writes, so the same planned faults land.
    let run = || {
        sim()
            .cases(CASES / 2)
            .seed(9)
            .executions(2)
            .check(shop, (0u64..1000,))
            .faults_injected
    };
    assert_eq!(run(), run());
}
