//! Property-based simulation of your workflows under faults (feature
//! `testing`).
//!
//! [`check`] runs a durable function many times on generated arguments,
//! each time twice: once clean, once under a generated [`FaultPlan`] —
//! worker crashes at any storage write, transient failures of functions
//! with a retry policy, leases that expire mid-step (a zombie worker whose
//! late writes must be refused), signals delivered late or twice, clock
//! jumps past timers and leases, storage writes that fail (before they
//! land, or after, their reply lost) followed by storage going away for a
//! while. Both runs use the real engine: the same
//! workers, the same replay, the memory backend, on a current-thread tokio
//! runtime with paused time, so every sleep and lease runs on a virtual
//! clock and a case takes milliseconds.
//!
//! Each case checks that the faulty run ended like the clean one (same
//! status and result), that its journals equal the clean run's (ignoring
//! timestamps, recorded clock and random values, and the order in which
//! independent answers arrived), that no execution was lost, stuck,
//! paused or dead-lettered and no task was left behind, that every
//! journaled command was answered at most once, and that an `idempotent`
//! body ran at most once per key (plus one per injected fault).
//!
//! A failure shrinks the arguments and the plan, drops every fault the
//! failure does not need, and reports the case's seed, with values printed
//! as JSON-like text; [`Simulation::replay`] runs that one case again from
//! the seed.
//!
//! ```
//! #[stent::durable(retry_policy = stent::RetryPolicy::default())]
//! async fn charge(order: u64, cents: u64) -> Result<String, String> {
//!     Ok(format!("receipt-{order}-{cents}"))
//! }
//!
//! #[stent::durable]
//! async fn checkout(order: u64, cents: u64) -> Result<String, String> {
//!     let receipt = charge(order, cents).await?;
//!     stent::Stent::sleep("10m").await.map_err(|e| e.to_string())?;
//!     Ok(receipt)
//! }
//!
//! stent::testing::Simulation::new()
//!     .cases(20)
//!     .check(checkout, (0u64..1000, 1u64..100_000));
//! ```
//!
//! Your workflow must be deterministic for this to hold — which is the
//! point: a workflow whose outcome depends on process state that is not
//! journaled fails the check with the seed that shows it.
//!
//! Limits: the outcome may not depend on [`crate::Stent::uuid`],
//! [`crate::Stent::random`] or [`crate::Stent::now`] values (they differ
//! between runs; their journal entries are compared by kind only), and
//! process-wide state your bodies keep (statics) carries over from one run
//! to the next. The arguments and the fault plan of a seed never change, and
//! in practice neither does the run (virtual time, one thread); tokio's
//! `select!` and the engine's hash maps are not seeded, though, so the order
//! of things within one virtual instant is not guaranteed.

mod backend;
mod compare;
mod plan;
mod run;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde::Serialize;
use stent_journal::Payload;

pub use plan::{Fault, FaultPlan, Faults, PlanSpace, SignalDelivery};
/// The proptest version this harness is built on, for writing argument
/// strategies without a dependency of your own.
pub use proptest;

use crate::call::IntoDefinition;
use crate::registry::{DurableFn, FunctionRegistry};
use run::{Faulty, RunConfig, RunOutput};

/// Checks `workflow` with default settings: 256 cases (or
/// `STENT_SIM_CASES`), every fault kind. Panics with a report (seed, shrunk
/// arguments and fault plan, what went wrong) if a case fails.
///
/// ```
/// #[stent::durable]
/// async fn double(x: u32) -> Result<u32, String> {
///     Ok(x * 2)
/// }
///
/// stent::testing::check(double, (0u32..100,));
/// ```
pub fn check<F, M, S>(workflow: F, args: S) -> Summary
where
    F: IntoDefinition<M>,
    S: Strategy<Value = <F::Def as DurableFn>::Args>,
    <F::Def as DurableFn>::Args: Clone + fmt::Debug + Sync,
{
    Simulation::new().check(workflow, args)
}

/// The settings of a simulation; [`Simulation::check`] runs it.
///
/// ```
/// use std::time::Duration;
/// use stent::testing::{Faults, Simulation};
///
/// let sim = Simulation::new()
///     .cases(100)
///     .seed(7)
///     .faults(Faults::all().zombies(false))
///     .signal("approval", &true)
///     .executions(2)
///     .lease_duration(Duration::from_secs(10));
/// # let _ = sim;
/// ```
#[derive(Clone)]
pub struct Simulation {
    cases: u32,
    seed: Option<u64>,
    faults: Faults,
    signals: Vec<(String, Payload)>,
    signal_error: Option<String>,
    executions: usize,
    lease: Duration,
    time_limit: Duration,
    max_signal_delay: Duration,
    max_faults: usize,
    max_shrink_iters: u32,
    registry: Option<Arc<FunctionRegistry>>,
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("cases", &self.cases)
            .field("seed", &self.seed)
            .field("faults", &self.faults)
            .field("signals", &self.signals.len())
            .field("executions", &self.executions)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Default for Simulation {
    fn default() -> Self {
        Self::new()
    }
}

/// What a passing [`Simulation::check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Cases run (each one clean and one faulty run).
    pub cases: u32,
    /// Faults that happened over all faulty runs.
    pub faults_injected: u64,
    /// Writes of workers whose lease had been taken over, refused by
    /// fencing, over all faulty runs (zombies and clock jumps cause them).
    pub writes_refused: u64,
    /// The master seed the case seeds were derived from (the case seed,
    /// for a replay).
    pub seed: u64,
}

/// A failing case: its seed, the shrunk arguments and fault plan, and what
/// went wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimulationFailure {
    /// The workflow.
    pub function: &'static str,
    /// The case's seed: [`Simulation::replay`] runs this case again.
    pub seed: u64,
    /// The (shrunk) arguments, as `Debug` prints them.
    pub args: String,
    /// The (shrunk) fault plan.
    pub plan: FaultPlan,
    /// The plan in words, write points resolved.
    pub plan_description: String,
    /// What went wrong.
    pub problems: Vec<String>,
}

impl fmt::Display for SimulationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stent::testing: {} failed the simulation (case seed {})",
            self.function, self.seed
        )?;
        writeln!(f, "  arguments: {}", self.args)?;
        writeln!(f, "  fault plan: {}", self.plan_description)?;
        writeln!(f, "  plan: {:?}", self.plan)?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        write!(
            f,
            "  replay this case with Simulation::replay(.., {}) (same settings), or rerun the test with STENT_SIM_REPLAY={}",
            self.seed, self.seed
        )
    }
}

impl std::error::Error for SimulationFailure {}

/// Case seed `index` of master seed `seed`.
fn case_seed(seed: u64, index: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"stent/testing/case");
    h.update(&seed.to_le_bytes());
    h.update(&index.to_le_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

fn rng_of(seed: u64) -> TestRng {
    let bytes = blake3::hash(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, bytes.as_bytes())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Simulation {
    /// Defaults: 256 cases (`STENT_SIM_CASES` overrides), seed from
    /// `STENT_SIM_SEED` or derived from the workflow's name, every fault
    /// kind, one execution, 2 min leases, one virtual day before a run
    /// counts as stuck, signals at most 60 s late, up to 3 faults a plan.
    pub fn new() -> Simulation {
        Simulation {
            cases: env_u64("STENT_SIM_CASES").map_or(256, |n| n as u32),
            seed: env_u64("STENT_SIM_SEED"),
            faults: Faults::all(),
            signals: Vec::new(),
            signal_error: None,
            executions: 1,
            lease: Duration::from_secs(120),
            time_limit: Duration::from_secs(24 * 3600),
            max_signal_delay: Duration::from_secs(60),
            max_faults: 3,
            max_shrink_iters: 256,
            registry: None,
        }
    }

    /// How many cases (argument and fault plan pairs) to run.
    pub fn cases(mut self, n: u32) -> Self {
        self.cases = n;
        self
    }

    /// The master seed; each case's seed is derived from it and its index.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Which fault kinds plans contain.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Sends signal `name` with `payload` to every execution after
    /// dispatch (at once in the clean run; late or twice in faulty runs).
    /// Signals are sent in the order they are added; list a name as often
    /// as the workflow waits for it.
    pub fn signal(mut self, name: &str, payload: &impl Serialize) -> Self {
        match Payload::encode(payload) {
            Ok(p) => self.signals.push((name.to_string(), p)),
            Err(e) => {
                self.signal_error = Some(format!("payload of signal {name:?} does not encode: {e}"))
            }
        }
        self
    }

    /// Dispatches the workflow this many times with the same arguments in
    /// each run (to exercise `cached` and `idempotent` across executions).
    pub fn executions(mut self, n: usize) -> Self {
        self.executions = n.max(1);
        self
    }

    /// The workers' lease duration (default 2 min of virtual time; the
    /// heartbeat renews at half of it). Zombie stalls last longer than
    /// one lease, clock jumps up to three.
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease = d.max(Duration::from_millis(10));
        self
    }

    /// Virtual time after which a run that has not ended counts as stuck
    /// (default one day).
    pub fn time_limit(mut self, d: Duration) -> Self {
        self.time_limit = d;
        self
    }

    /// The latest a signal is delivered in a faulty run (default 60 s).
    /// Keep it below any `wait_for_signal_timeout` of the workflow.
    pub fn max_signal_delay(mut self, d: Duration) -> Self {
        self.max_signal_delay = d;
        self
    }

    /// Most faults in one plan (default 3).
    pub fn max_faults(mut self, n: usize) -> Self {
        self.max_faults = n.max(1);
        self
    }

    /// Most shrinking steps after a failure (default 256).
    pub fn max_shrink_iters(mut self, n: u32) -> Self {
        self.max_shrink_iters = n;
        self
    }

    /// Use this registry instead of the global one (it must hold the
    /// workflow and everything it calls).
    pub fn function_registry(mut self, registry: FunctionRegistry) -> Self {
        self.registry = Some(Arc::new(registry));
        self
    }

    fn master_seed(&self, function: &str) -> u64 {
        self.seed.unwrap_or_else(|| {
            let h = blake3::hash(function.as_bytes());
            u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
        })
    }

    /// Runs the simulation and panics with the failure report if a case
    /// fails (for use in `#[test]`s).
    pub fn check<F, M, S>(&self, workflow: F, args: S) -> Summary
    where
        F: IntoDefinition<M>,
        S: Strategy<Value = <F::Def as DurableFn>::Args>,
        <F::Def as DurableFn>::Args: Clone + fmt::Debug + Sync,
    {
        match self.run(workflow, args) {
            Ok(summary) => summary,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Runs the simulation; the first failing case, shrunk, is the error.
    ///
    /// With `STENT_SIM_REPLAY=<case seed>` in the environment it runs only
    /// that case (as [`Simulation::replay`] does).
    pub fn run<F, M, S>(&self, _workflow: F, args: S) -> Result<Summary, Box<SimulationFailure>>
    where
        F: IntoDefinition<M>,
        S: Strategy<Value = <F::Def as DurableFn>::Args>,
        <F::Def as DurableFn>::Args: Clone + fmt::Debug + Sync,
    {
        self.run_def::<F::Def, S>(args)
    }

    /// Runs the one case of seed `seed` (as a failure report prints it)
    /// with these settings, shrinking it again if it fails.
    ///
    /// ```
    /// #[stent::durable]
    /// async fn double(x: u32) -> Result<u32, String> {
    ///     Ok(x * 2)
    /// }
    ///
    /// let sim = stent::testing::Simulation::new();
    /// assert!(sim.replay(double, (0u32..100,), 1234).is_ok());
    /// ```
    pub fn replay<F, M, S>(
        &self,
        _workflow: F,
        args: S,
        seed: u64,
    ) -> Result<Summary, Box<SimulationFailure>>
    where
        F: IntoDefinition<M>,
        S: Strategy<Value = <F::Def as DurableFn>::Args>,
        <F::Def as DurableFn>::Args: Clone + fmt::Debug + Sync,
    {
        self.replay_def::<F::Def, S>(args, seed)
    }

    /// [`Simulation::check`] for a durable function named by its type (one
    /// that implements [`DurableFn`] by hand, for instance, and is
    /// registered in a [`Simulation::function_registry`]).
    ///
    /// ```
    /// #[stent::durable]
    /// async fn double(x: u32) -> Result<u32, String> {
    ///     Ok(x * 2)
    /// }
    ///
    /// fn check_by_type<D: stent::definition::DurableFn<Args = (u32,)>>() {
    ///     stent::testing::Simulation::new()
    ///         .cases(10)
    ///         .check_def::<D, _>((0u32..10,));
    /// }
    /// # let _ = double(1);
    /// ```
    pub fn check_def<D, S>(&self, args: S) -> Summary
    where
        D: DurableFn,
        S: Strategy<Value = D::Args>,
        D::Args: Clone + fmt::Debug + Sync,
    {
        match self.run_def::<D, S>(args) {
            Ok(summary) => summary,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// [`Simulation::run`] for a durable function named by its type.
    pub fn run_def<D, S>(&self, args: S) -> Result<Summary, Box<SimulationFailure>>
    where
        D: DurableFn,
        S: Strategy<Value = D::Args>,
        D::Args: Clone + fmt::Debug + Sync,
    {
        if let Some(seed) = env_u64("STENT_SIM_REPLAY") {
            return self.replay_def::<D, S>(args, seed);
        }
        let seed = self.master_seed(D::NAME);
        let (mut faults_injected, mut writes_refused) = (0, 0);
        for index in 0..self.cases {
            let (f, r) = self.case::<D, S>(&args, case_seed(seed, index))?;
            faults_injected += f;
            writes_refused += r;
        }
        Ok(Summary {
            cases: self.cases,
            faults_injected,
            writes_refused,
            seed,
        })
    }

    /// [`Simulation::replay`] for a durable function named by its type.
    pub fn replay_def<D, S>(&self, args: S, seed: u64) -> Result<Summary, Box<SimulationFailure>>
    where
        D: DurableFn,
        S: Strategy<Value = D::Args>,
        D::Args: Clone + fmt::Debug + Sync,
    {
        let (faults_injected, writes_refused) = self.case::<D, S>(&args, seed)?;
        Ok(Summary {
            cases: 1,
            faults_injected,
            writes_refused,
            seed,
        })
    }

    /// Runs one case; returns the faults that happened and the writes
    /// fencing refused.
    fn case<D: DurableFn, S>(
        &self,
        args: &S,
        seed: u64,
    ) -> Result<(u64, u64), Box<SimulationFailure>>
    where
        S: Strategy<Value = D::Args>,
        D::Args: Clone + fmt::Debug + Sync,
    {
        let fail = |args: String, plan: FaultPlan, writes: u32, problems: Vec<String>| {
            Box::new(SimulationFailure {
                function: D::NAME,
                seed,
                args,
                plan_description: plan.describe(writes),
                plan,
                problems,
            })
        };
        if let Some(e) = &self.signal_error {
            return Err(fail(
                String::new(),
                FaultPlan::default(),
                0,
                vec![e.clone()],
            ));
        }
        let registry = self
            .registry
            .clone()
            .unwrap_or_else(FunctionRegistry::global);
        if let Err(e) = registry.get(D::NAME) {
            return Err(fail(
                String::new(),
                FaultPlan::default(),
                0,
                vec![e.to_string()],
            ));
        }
        let space = PlanSpace {
            faults: self.faults,
            retryable: registry
                .names()
                .into_iter()
                .filter(|n| registry.get(n).is_ok_and(|e| e.retry_policy.is_some()))
                .collect(),
            lease: self.lease,
            signals: self
                .signals
                .iter()
                .map(|(name, _)| self.signals.iter().filter(|(n, _)| n == name).count() == 1)
                .collect(),
            max_signal_delay: self.max_signal_delay,
            max_faults: self.max_faults,
        };
        let config = RunConfig {
            registry,
            executions: self.executions,
            signals: self.signals.clone(),
            lease: self.lease,
            time_limit: self.time_limit,
        };
        let strategy = (args, FaultPlan::strategy(&space));
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 1,
                max_shrink_iters: self.max_shrink_iters,
                failure_persistence: None,
                ..Config::default()
            },
            rng_of(seed),
        );
        let tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => {
                return Err(fail(
                    String::new(),
                    FaultPlan::default(),
                    0,
                    vec![format!("the argument strategy generated nothing: {e}")],
                ));
            }
        };
        // The clean run of the last arguments seen, reused while shrinking
        // only the plan.
        let clean_cache: RefCell<Option<(String, Arc<RunOutput>)>> = RefCell::new(None);
        let last_writes = RefCell::new(0u32);
        let fired = RefCell::new((0u64, 0u64));
        let check = |args: &D::Args, plan: &FaultPlan| -> Outcome {
            let key = format!("{args:?}");
            let cached = clean_cache
                .borrow()
                .as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, c)| c.clone());
            let clean = match cached {
                Some(c) => c,
                None => {
                    let c = Arc::new(run::run::<D>(&config, args, None));
                    *clean_cache.borrow_mut() = Some((key, c.clone()));
                    c
                }
            };
            *last_writes.borrow_mut() = clean.writes;
            if !clean.problems.is_empty() {
                return Outcome::CleanFails(clean.problems.clone());
            }
            let faulty = run::run::<D>(
                &config,
                args,
                Some(Faulty {
                    plan,
                    clean_writes: clean.writes,
                }),
            );
            *fired.borrow_mut() = (u64::from(faulty.fired), u64::from(faulty.refused));
            let problems = verdict(&clean, &faulty);
            if problems.is_empty() {
                Outcome::Passes
            } else {
                Outcome::FaultyFails(problems)
            }
        };
        let result = runner.run_one(tree, |(args, plan): (D::Args, FaultPlan)| {
            match check(&args, &plan) {
                Outcome::Passes => Ok(()),
                Outcome::CleanFails(problems) => Err(TestCaseError::fail(format!(
                    "{CLEAN_FAILS}\n{}",
                    bullet(&problems)
                ))),
                Outcome::FaultyFails(problems) => Err(TestCaseError::fail(bullet(&problems))),
            }
        });
        match result {
            Ok(_) => Ok(*fired.borrow()),
            Err(TestError::Fail(reason, (args, plan))) => {
                let message = reason.message().to_string();
                let (plan, problems) =
                    if message.starts_with(CLEAN_FAILS) {
                        // No fault plays a part: the clean run has none.
                        (
                            FaultPlan::default(),
                            message.lines().map(str::to_string).collect(),
                        )
                    } else {
                        minimize(plan, message.lines().map(str::to_string).collect(), |p| {
                            match check(&args, p) {
                                Outcome::FaultyFails(problems) => Some(problems),
                                Outcome::Passes | Outcome::CleanFails(_) => None,
                            }
                        })
                    };
                // Writes of the clean run of the shrunk arguments.
                let key = format!("{args:?}");
                let writes = clean_cache
                    .borrow()
                    .as_ref()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, c)| c.writes)
                    .unwrap_or(*last_writes.borrow());
                Err(fail(key, plan, writes, problems))
            }
            Err(TestError::Abort(reason)) => Err(fail(
                String::new(),
                FaultPlan::default(),
                0,
                vec![format!("aborted: {reason}")],
            )),
        }
    }
}

/// How one case's pair of runs went.
enum Outcome {
    Passes,
    /// The run without faults already breaks an invariant.
    CleanFails(Vec<String>),
    /// The run with the plan's faults breaks one, or ends differently.
    FaultyFails(Vec<String>),
}

/// First line of the message of a case whose clean run fails.
const CLEAN_FAILS: &str = "the clean run (no faults) already fails:";

/// Drops every fault (and every late or duplicated signal delivery) of a
/// failing `plan` that the failure does not need, one at a time: `fails`
/// reruns a plan and returns its problems if it still fails. Returns the
/// smallest plan found and its problems.
fn minimize(
    mut plan: FaultPlan,
    mut problems: Vec<String>,
    mut fails: impl FnMut(&FaultPlan) -> Option<Vec<String>>,
) -> (FaultPlan, Vec<String>) {
    let mut i = 0;
    while i < plan.faults.len() {
        let mut without = plan.clone();
        without.faults.remove(i);
        match fails(&without) {
            Some(p) => {
                plan = without;
                problems = p;
            }
            None => i += 1,
        }
    }
    let on_time = SignalDelivery {
        delay_ms: 0,
        twice: false,
    };
    for i in 0..plan.signals.len() {
        if plan.signals[i] == on_time {
            continue;
        }
        let mut without = plan.clone();
        without.signals[i] = on_time;
        if let Some(p) = fails(&without) {
            plan = without;
            problems = p;
        }
    }
    (plan, problems)
}

fn bullet(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| p.trim_start_matches("- ").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with a faulty run, compared with the clean one.
fn verdict(clean: &RunOutput, faulty: &RunOutput) -> Vec<String> {
    let mut problems: Vec<String> = faulty
        .problems
        .iter()
        .map(|p| format!("faulty run: {p}"))
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    for (i, (a, b)) in clean.executions.iter().zip(&faulty.executions).enumerate() {
        if a.status != b.status || a.terminal != b.terminal {
            let ending = |e: &run::Ended| match (&e.terminal, e.status) {
                (Some(t), _) => crate::debugger::describe_event(t, 200),
                (None, Some(s)) => s.as_str().to_string(),
                (None, None) => "with no record".to_string(),
            };
            problems.push(format!(
                "execution #{i} ended differently: clean run {}, faulty run {}",
                ending(a),
                ending(b)
            ));
            continue;
        }
        if let Some(d) = compare::first_difference(&a.journal, &b.journal) {
            problems.push(format!("execution #{i}: journals differ: {d}"));
        }
    }
    for (key, runs) in &clean.idempotent_runs {
        if *runs > 1 {
            problems.push(format!(
                "clean run: the idempotent body of key {key} ran {runs} times"
            ));
        }
    }
    let allowed = 1 + faulty.fired;
    for (key, runs) in &faulty.idempotent_runs {
        if *runs > allowed {
            problems.push(format!(
                "faulty run: the idempotent body of key {key} ran {runs} times ({} fault(s) allow at most {allowed})",
                faulty.fired
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(at_write: u32) -> Fault {
        Fault::Crash {
            at_write,
            write_lost: false,
        }
    }

    #[test]
    fn minimizing_keeps_only_the_faults_a_failure_needs() {
        let plan = FaultPlan {
            faults: vec![crash(1), crash(2), crash(3)],
            signals: vec![
                SignalDelivery {
                    delay_ms: 500,
                    twice: true,
                },
                SignalDelivery {
                    delay_ms: 90,
                    twice: false,
                },
            ],
        };
        // Fails when write 2 crashes and signal #1 comes late; nothing else counts.
        let mut runs = 0;
        let (small, problems) = minimize(plan, vec!["first".into()], |p| {
            runs += 1;
            let needed = p.faults.contains(&crash(2)) && p.signals[1].delay_ms > 0;
            needed.then(|| vec![format!("fails with {} faults", p.faults.len())])
        });
        assert_eq!(small.faults, vec![crash(2)]);
        assert_eq!(small.signals[0].delay_ms, 0);
        assert!(!small.signals[0].twice);
        assert_eq!(small.signals[1].delay_ms, 90);
        assert_eq!(problems, vec!["fails with 1 faults".to_string()]);
        // One try per fault and per late signal.
        assert_eq!(runs, 5);
    }
}
