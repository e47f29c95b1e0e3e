//! One simulated run: the real engine (workers, replay, the memory backend)
//! on a current-thread tokio runtime with paused time, so every sleep,
//! lease and timer runs on a virtual clock and no run waits for real.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stent_journal::event::Event;
use stent_journal::store::{
    DeadLetterStore, ExecutionStatus, ExecutionStore, InspectStore, JournalStore, SignalStore,
    TaskFilter, TaskState,
};
use stent_journal::{ExecutionId, Failure, Payload, Timestamp};
use stent_memory::MemoryBackend;
use tokio::sync::mpsc;

use super::backend::{Action, Note, Shared, SimBackend};
use super::compare::{Normalized, normalize};
use super::plan::{Fault, FaultPlan, SignalDelivery, resolve_point};
use crate::call::Call;
use crate::clock::Clock;
use crate::executor::Stent;
use crate::registry::{DurableFn, FunctionRegistry};

/// The virtual clock's reading at the start of every run:
/// 2030-01-01T00:00:00Z, so runs read the same times.
const SIM_EPOCH_MS: i64 = 1_893_456_000_000;

/// Most workers one run starts (the first plus replacements).
const MAX_WORKERS: u32 = 8;

/// Virtual time since the run started, on a fixed epoch.
#[derive(Debug, Clone)]
struct SimClock {
    start: tokio::time::Instant,
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp(SIM_EPOCH_MS + self.start.elapsed().as_millis() as i64)
    }
}

/// What every run of one check shares.
pub(crate) struct RunConfig {
    pub registry: Arc<FunctionRegistry>,
    pub executions: usize,
    pub signals: Vec<(String, Payload)>,
    pub lease: Duration,
    pub time_limit: Duration,
}

/// How one execution ended, and its journals.
#[derive(Debug)]
pub(crate) struct Ended {
    pub status: Option<ExecutionStatus>,
    pub terminal: Option<Event>,
    pub journal: Normalized,
}

/// Everything a run observed.
#[derive(Debug, Default)]
pub(crate) struct RunOutput {
    pub executions: Vec<Ended>,
    /// Storage writes made by workers.
    pub writes: u32,
    /// Faults that happened (some planned ones may land on writes the run
    /// never made).
    pub fired: u32,
    /// Worker writes refused by fencing.
    pub refused: u32,
    /// Completed body runs of `idempotent` functions, per idempotency key.
    pub idempotent_runs: BTreeMap<String, u32>,
    /// Invariants the run broke.
    pub problems: Vec<String>,
}

/// Body runs, counted by the registry wrapper.
#[derive(Default)]
struct Bodies {
    /// `(function, nth)`: the nth completed body run of `function` fails.
    fail: Vec<(String, u32)>,
    /// Crashes and stalls planned: each may cost a task one attempt.
    lost_claims: u32,
    completions: Mutex<HashMap<&'static str, u32>>,
    idempotent_runs: Mutex<BTreeMap<String, u32>>,
    injected: AtomicU32,
}

impl Bodies {
    fn completed(
        &self,
        function: &'static str,
        key: Option<String>,
        out: Result<Payload, Failure>,
    ) -> Result<Payload, Failure> {
        if let Some(key) = key {
            *self
                .idempotent_runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default() += 1;
        }
        let n = {
            let mut c = self.completions.lock().unwrap_or_else(|p| p.into_inner());
            let n = c.entry(function).or_default();
            *n += 1;
            *n
        };
        if self.fail.iter().any(|(f, k)| f == function && *k == n) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Failure::Panic {
                message: format!(
                    "stent::testing: injected transient failure of body run {n} of {function}"
                ),
            });
        }
        out
    }
}

/// The run's registry: every function of `base`, its body counted (and
/// failed where the plan says so); a function planned to fail `k` times
/// gets `k` more attempts, and every function with a retry policy one more
/// per planned crash, stall or clock jump (a claim lost to a dead worker counts as an
/// attempt), so the plan never exhausts a retry policy by itself.
///
/// Each worker gets its own copy: once `worker` has crashed, the bodies it
/// was running are never polled again (its in-flight work dies with it).
fn wrap_registry(
    base: &FunctionRegistry,
    bodies: &Arc<Bodies>,
    shared: &Arc<Shared>,
    worker: u32,
) -> FunctionRegistry {
    let mut out = FunctionRegistry::new();
    for name in base.names() {
        let Ok(entry) = base.get(&name) else { continue };
        let extra =
            bodies.fail.iter().filter(|(f, _)| *f == name).count() as u32 + bodies.lost_claims;
        let policy = entry.retry_policy.clone().map(|mut p| {
            p.max_attempts = p.max_attempts.saturating_add(extra);
            p
        });
        let bodies = bodies.clone();
        let shared = shared.clone();
        let (function, version, key_of) = (entry.name, entry.version, entry.idempotency_key);
        out.insert(entry.wrapped(policy, move |invoke, args| {
            let key = key_of.and_then(|k| k(function, version, &args).ok());
            let mut body = invoke(args);
            let bodies = bodies.clone();
            let shared = shared.clone();
            Box::pin(async move {
                let out = std::future::poll_fn(|cx| {
                    if shared.is_frozen(worker) {
                        return std::task::Poll::Pending;
                    }
                    body.as_mut().poll(cx)
                })
                .await;
                bodies.completed(function, key, out)
            })
        }));
    }
    out
}

/// A faulty run's plan, with the clean run's write count to map write
/// points onto.
pub(crate) struct Faulty<'a> {
    pub plan: &'a FaultPlan,
    pub clean_writes: u32,
}

fn actions_of(faulty: &Faulty<'_>, lease: Duration) -> BTreeMap<u32, Vec<Action>> {
    let mut actions: BTreeMap<u32, Vec<Action>> = BTreeMap::new();
    let at = |p: u32| resolve_point(p, faulty.clean_writes);
    for f in &faulty.plan.faults {
        match f {
            Fault::Crash {
                at_write,
                write_lost,
            } => actions
                .entry(at(*at_write))
                .or_default()
                .push(Action::Crash { lost: *write_lost }),
            Fault::Zombie { at_write, extra_ms } => actions
                .entry(at(*at_write))
                .or_default()
                .push(Action::Stall(lease + Duration::from_millis(*extra_ms))),
            Fault::ClockJump { at_write, by_ms } => actions
                .entry(at(*at_write))
                .or_default()
                .push(Action::Jump(Duration::from_millis(*by_ms))),
            Fault::StorageFault {
                at_write,
                landed,
                down_ms,
            } => actions
                .entry(at(*at_write))
                .or_default()
                .push(Action::StorageFault {
                    landed: *landed,
                    down: Duration::from_millis(*down_ms),
                }),
            Fault::FailCall { .. } => {}
        }
    }
    // A crash ends the worker: anything planned after it at the same write
    // would never happen, so apply stalls and jumps first.
    for list in actions.values_mut() {
        list.sort_by_key(|a| matches!(a, Action::Crash { .. }));
    }
    actions
}

/// Runs `D` on `args` once (clean without `faulty`) and reports what
/// happened. Builds its own runtime; called from inside one, it runs on a
/// scoped thread.
pub(crate) fn run<D: DurableFn>(
    config: &RunConfig,
    args: &D::Args,
    faulty: Option<Faulty<'_>>,
) -> RunOutput
where
    D::Args: Clone + Sync,
{
    let go = || match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt.block_on(simulate::<D>(config, args, faulty)),
        Err(e) => RunOutput {
            problems: vec![format!("could not build the simulation runtime: {e}")],
            ..RunOutput::default()
        },
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(go).join().unwrap_or_else(|_| RunOutput {
                problems: vec!["the simulation thread panicked".into()],
                ..RunOutput::default()
            })
        })
    } else {
        go()
    }
}

async fn simulate<D: DurableFn>(
    config: &RunConfig,
    args: &D::Args,
    faulty: Option<Faulty<'_>>,
) -> RunOutput
where
    D::Args: Clone,
{
    let start = tokio::time::Instant::now();
    let clock = SimClock { start };
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let actions = faulty
        .as_ref()
        .map(|f| actions_of(f, config.lease))
        .unwrap_or_default();
    let shared = Shared::new(MemoryBackend::new(), actions, notes_tx);
    let bodies = Arc::new(Bodies {
        fail: faulty
            .as_ref()
            .map(|f| {
                f.plan
                    .faults
                    .iter()
                    .filter_map(|x| match x {
                        Fault::FailCall { function, nth } => Some((function.clone(), *nth)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        lost_claims: faulty.as_ref().map_or(0, |f| {
            f.plan
                .faults
                .iter()
                .filter(|x| x.may_lose_a_claim())
                .count() as u32
        }),
        ..Bodies::default()
    });
    let executor = |worker: u32| {
        Stent::builder(SimBackend::new(shared.clone(), worker))
            .function_registry(wrap_registry(&config.registry, &bodies, &shared, worker))
            .clock(clock.clone())
            .build()
    };
    let mut out = RunOutput::default();
    let client = executor(0);
    let mut workers: Vec<Stent> = Vec::new();
    let start_worker = |workers: &mut Vec<Stent>| {
        let n = workers.len() as u32 + 1;
        let stent = executor(n);
        let serve = stent
            .worker()
            .worker_id(format!("sim-worker-{n}"))
            .lease_duration(config.lease)
            .poll_min_interval(Duration::from_secs(1))
            // Work made runnable by another worker or a signal is found by
            // polling (workers do not share a process here); a parked
            // task's own wake-up time is never overslept.
            .poll_max_interval(Duration::from_secs(300))
            .cleanup_interval(None)
            .serve();
        tokio::spawn(serve);
        workers.push(stent);
    };
    start_worker(&mut workers);

    let mut ids: Vec<ExecutionId> = Vec::new();
    for _ in 0..config.executions.max(1) {
        match client.dispatch(Call::<D>::new(args.clone())).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                out.problems.push(format!("dispatch failed: {e}"));
                return out;
            }
        }
    }

    // Signals, in the configured order, at the planned times.
    let deliveries: Vec<SignalDelivery> = match &faulty {
        Some(f) => f.plan.signals.clone(),
        None => Vec::new(),
    };
    let signals = config.signals.clone();
    let memory = shared.memory.clone();
    let signal_ids = ids.clone();
    let signal_clock = clock.clone();
    tokio::spawn(async move {
        let mut at = 0u64;
        for (i, (name, payload)) in signals.into_iter().enumerate() {
            let d = deliveries.get(i).copied().unwrap_or(SignalDelivery {
                delay_ms: 0,
                twice: false,
            });
            at = at.max(d.delay_ms);
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            for _ in 0..if d.twice { 2 } else { 1 } {
                for id in &signal_ids {
                    let _ = memory
                        .send_signal(*id, &name, payload.as_bytes().to_vec(), signal_clock.now())
                        .await;
                }
            }
        }
    });

    // Wait until every execution has ended, starting a fresh worker for
    // each crashed or stalled one.
    let mut poll = Duration::from_millis(100);
    loop {
        tokio::select! {
            biased;
            note = notes.recv() => {
                if let Some(Note::Crashed | Note::Stalled) = note
                    && (workers.len() as u32) < MAX_WORKERS
                {
                    start_worker(&mut workers);
                }
                continue;
            }
            _ = tokio::time::sleep(poll) => {}
        }
        poll = (poll * 2).min(Duration::from_secs(60));
        let mut open = 0;
        for id in &ids {
            match shared.memory.execution(*id).await {
                Ok(Some(r)) if r.status.is_terminal() || r.status == ExecutionStatus::Paused => {}
                Ok(Some(_)) => open += 1,
                Ok(None) => {
                    out.problems.push(format!("execution {id} was lost"));
                }
                Err(e) => out.problems.push(format!("reading execution {id}: {e}")),
            }
        }
        if !out.problems.is_empty() {
            break;
        }
        if open == 0 {
            break;
        }
        if let Ok(letters) = shared.memory.list_dead_letters(10).await
            && let Some(letter) = letters.first()
        {
            out.problems.push(format!(
                "task {} ({}) was dead-lettered: {}",
                letter.task, letter.function, letter.reason
            ));
            break;
        }
        if start.elapsed() > config.time_limit {
            out.problems.push(format!(
                "{open} execution(s) still running after {:?} of virtual time (stuck)",
                config.time_limit
            ));
            break;
        }
    }

    out.writes = shared.writes();
    out.fired = shared.fired.load(Ordering::SeqCst) + bodies.injected.load(Ordering::SeqCst);
    out.refused = shared.refused.load(Ordering::SeqCst);
    out.idempotent_runs = bodies
        .idempotent_runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for id in ids {
        out.executions
            .push(collect(&shared.memory, id, &mut out.problems).await);
    }
    out
}

/// Reads how an execution ended, its journals and its tasks.
async fn collect(memory: &MemoryBackend, id: ExecutionId, problems: &mut Vec<String>) -> Ended {
    let record = memory.execution(id).await.ok().flatten();
    let status = record.as_ref().map(|r| r.status);
    let terminal = record
        .as_ref()
        .and_then(|r| r.terminal_event.as_ref())
        .and_then(|bytes| Event::decode(bytes).ok());
    if let Some(r) = &record
        && r.status == ExecutionStatus::Paused
    {
        problems.push(format!(
            "execution paused: {}",
            r.pause()
                .map(|p| p.text)
                .unwrap_or_else(|| "(no report)".into())
        ));
    }
    let journal = match memory.read_execution_journal(id, None).await {
        Ok(groups) => normalize(id.root_invocation(), groups, problems),
        Err(e) => {
            problems.push(format!("reading the journal of {id}: {e}"));
            Normalized::default()
        }
    };
    if status.is_some_and(ExecutionStatus::is_terminal) {
        let tasks = memory
            .list_tasks(TaskFilter::default().execution(id).limit(100_000))
            .await
            .unwrap_or_default();
        for t in tasks {
            if !matches!(t.state, TaskState::Done | TaskState::Cancelled) {
                problems.push(format!(
                    "task {} ({}) is left {} after its execution ended",
                    t.invocation, t.function, t.state
                ));
            }
        }
    }
    Ended {
        status,
        terminal,
        journal,
    }
}
