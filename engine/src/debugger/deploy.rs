//! The deploy check: replays every unfinished execution of a database (and,
//! optionally, the recently dispatched finished ones) against the code of
//! this build, and lists each one that would pause on it. It reads and never
//! writes, so it can run against production from a CI job before a deploy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use stent_journal::store::{ExecutionFilter, ExecutionRecord, ExecutionStatus};
use stent_journal::{ExecutionId, Timestamp};

use crate::debugger::DebugError;
use crate::debugger::export::export_of;
use crate::debugger::replay::{ReplayMode, ReplayReport, Replayer};
use crate::error::Error;
use crate::executor::Stent;
use crate::registry::FunctionRegistry;

/// Executions are listed this many at a time.
const PAGE: usize = 1_000;

/// What a deploy check replays, and how.
///
/// ```no_run
/// use stent::debugger::DeployCheck;
///
/// # async fn demo(stent: stent::Stent) -> Result<(), stent::debugger::DebugError> {
/// // In a test or a CI step, against a copy of production's database,
/// // with this build's functions registered:
/// let report = DeployCheck::new()
///     .include_finished(std::time::Duration::from_secs(24 * 3600))
///     .run(&stent)
///     .await?;
/// assert!(report.is_safe(), "{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeployCheck {
    finished_within: Option<Duration>,
    concurrency: usize,
    function: Option<String>,
    registry: Option<Arc<FunctionRegistry>>,
    all_versions: bool,
    also_runs: Vec<String>,
    code_version: Option<String>,
}

impl Default for DeployCheck {
    fn default() -> Self {
        DeployCheck {
            finished_within: None,
            concurrency: 8,
            function: None,
            registry: None,
            all_versions: false,
            also_runs: Vec::new(),
            code_version: None,
        }
    }
}

/// One execution that does not replay against this build's code.
#[derive(Debug, Clone)]
pub struct WouldPause {
    /// The execution.
    pub execution: ExecutionId,
    /// Its root function.
    pub function: String,
    /// Its status now.
    pub status: ExecutionStatus,
    /// The replay, with the first divergence: where and why.
    pub report: ReplayReport,
}

/// An execution whose journal names a function this build does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFunction {
    /// The execution.
    pub execution: ExecutionId,
    /// Its status now.
    pub status: ExecutionStatus,
    /// The function missing from this build's registry.
    pub function: String,
}

/// What a deploy check found.
#[derive(Debug, Clone, Default)]
pub struct DeployReport {
    /// Executions replayed.
    pub checked: usize,
    /// Those that replay cleanly (or catch up to where they wait).
    pub clean: usize,
    /// Paused executions that would now replay cleanly (a `stent resume`
    /// after the deploy lets them go on).
    pub would_resume: Vec<ExecutionId>,
    /// Those that would pause on this build's code.
    pub would_pause: Vec<WouldPause>,
    /// Those whose code this build does not have at all.
    pub missing_functions: Vec<MissingFunction>,
    /// Executions left out: pinned to code versions this build's workers
    /// do not run (see [`DeployCheck::all_versions`]).
    pub other_versions: usize,
    /// How long the check took.
    pub elapsed: Duration,
}

impl DeployReport {
    /// True when no checked execution would pause and none needs a
    /// function this build lacks.
    pub fn is_safe(&self) -> bool {
        self.would_pause.is_empty() && self.missing_functions.is_empty()
    }
}

impl fmt::Display for DeployReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deploy check: {} execution(s) replayed in {:.2} s: {} clean, {} would pause, {} need a missing function",
            self.checked,
            self.elapsed.as_secs_f64(),
            self.clean,
            self.would_pause.len(),
            self.missing_functions.len()
        )?;
        if self.other_versions > 0 {
            write!(
                f,
                "; {} execution(s) of other code versions left to their own workers",
                self.other_versions
            )?;
        }
        if !self.would_resume.is_empty() {
            write!(
                f,
                "; {} paused execution(s) replay cleanly now (resume them after the deploy)",
                self.would_resume.len()
            )?;
        }
        for p in &self.would_pause {
            let why = p
                .report
                .first_divergence()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "the replay stopped".into());
            write!(
                f,
                "\n  would pause: {} ({}, {}): {why}",
                p.execution, p.function, p.status
            )?;
        }
        for m in &self.missing_functions {
            write!(
                f,
                "\n  missing function: {} ({}) needs {}, which this build does not register",
                m.execution, m.status, m.function
            )?;
        }
        Ok(())
    }
}

/// How one execution fared.
enum Verdict {
    /// Clean; the id if it is paused now.
    Clean(Option<ExecutionId>),
    Diverged(Box<WouldPause>),
    Missing(MissingFunction),
}

impl DeployCheck {
    /// A check of every unfinished execution (pending, running, paused).
    pub fn new() -> DeployCheck {
        DeployCheck::default()
    }

    /// Also checks finished executions (completed, failed, cancelled,
    /// timed out) dispatched within `window` of now: code that no longer
    /// replays them is worth knowing about before a rollback or a fork.
    pub fn include_finished(mut self, window: Duration) -> Self {
        self.finished_within = Some(window);
        self
    }

    /// Only executions of this root function.
    pub fn function(mut self, function: impl Into<String>) -> Self {
        self.function = Some(function.into());
        self
    }

    /// Also checks executions pinned to these code versions, which the
    /// build's workers will run too (`WorkerBuilder::also_runs`).
    pub fn also_runs<I, S>(mut self, versions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.also_runs.extend(versions.into_iter().map(Into::into));
        self
    }

    /// The code version of the build being checked, when the executor the
    /// check runs on has none (a command-line binary; default: the
    /// executor's `StentBuilder::code_version`).
    pub fn code_version(mut self, version: impl Into<String>) -> Self {
        self.code_version = Some(version.into());
        self
    }

    /// Checks every execution whatever its code version. By default, when
    /// the executor has a code version (`StentBuilder::code_version`), only
    /// executions this build's workers would claim are checked: those of
    /// its version, of [`also_runs`](Self::also_runs), and those not pinned
    /// yet; the others are left to the workers of their own version.
    pub fn all_versions(mut self) -> Self {
        self.all_versions = true;
        self
    }

    /// Replays this many executions at a time (8 unless set; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Replays against this registry instead of the executor's own (the
    /// code of the build being deployed, when the check runs elsewhere).
    pub fn registry(mut self, registry: impl Into<Arc<FunctionRegistry>>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Runs the check against `stent`'s database. Reads only.
    pub async fn run(&self, stent: &Stent) -> Result<DeployReport, DebugError> {
        let started = tokio::time::Instant::now();
        let replayer = match &self.registry {
            Some(r) => Replayer::new(r.clone()).serializer(stent.inner.serializer),
            None => Replayer::for_stent(stent),
        }
        .mode(ReplayMode::StopAtFirst);
        let mut records = self.executions(stent).await?;
        let mut report = DeployReport::default();
        let own = self.code_version.as_deref().or(stent.code_version());
        if let (Some(own), false) = (own, self.all_versions) {
            let before = records.len();
            records.retain(|r| match r.code_version.as_deref() {
                None => true,
                Some(v) => v == own || self.also_runs.iter().any(|a| a == v),
            });
            report.other_versions = before - records.len();
        }
        report.checked = records.len();
        let verdicts: Vec<Verdict> = futures_util::stream::iter(records)
            .map(|record| check_one(stent, &replayer, record))
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        for v in verdicts {
            match v {
                Verdict::Clean(paused) => {
                    report.clean += 1;
                    report.would_resume.extend(paused);
                }
                Verdict::Diverged(p) => report.would_pause.push(*p),
                Verdict::Missing(m) => report.missing_functions.push(m),
            }
        }
        report.would_resume.sort();
        report.would_pause.sort_by_key(|p| p.execution);
        report.missing_functions.sort_by_key(|m| m.execution);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The records of every execution the check covers.
    async fn executions(&self, stent: &Stent) -> Result<Vec<ExecutionRecord>, DebugError> {
        let mut statuses = vec![
            ExecutionStatus::Pending,
            ExecutionStatus::Running,
            ExecutionStatus::Paused,
        ];
        let mut created_after = None;
        if let Some(window) = self.finished_within {
            statuses.extend([
                ExecutionStatus::Completed,
                ExecutionStatus::Failed,
                ExecutionStatus::Cancelled,
                ExecutionStatus::TimedOut,
            ]);
            let now = stent.clock_now();
            created_after = Some(Timestamp(
                now.0
                    .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)),
            ));
        }
        let mut out = Vec::new();
        for status in statuses {
            let finished = !matches!(
                status,
                ExecutionStatus::Pending | ExecutionStatus::Running | ExecutionStatus::Paused
            );
            let mut offset = 0;
            loop {
                let page = stent
                    .backend()
                    .list_executions(
                        ExecutionFilter::default()
                            .status(status)
                            .limit(PAGE)
                            .offset(offset)
                            .function(self.function.clone())
                            .created_after(if finished { created_after } else { None }),
                    )
                    .await?;
                let n = page.len();
                out.extend(page);
                if n < PAGE {
                    break;
                }
                offset += n;
            }
        }
        // Paging over a live database may see an execution twice as it
        // changes status between pages.
        out.sort_by_key(|r| r.id);
        out.dedup_by_key(|r| r.id);
        Ok(out)
    }
}

async fn check_one(
    stent: &Stent,
    replayer: &Replayer,
    record: ExecutionRecord,
) -> Result<Verdict, DebugError> {
    let id = record.id;
    let status = record.status;
    let function = record.function.clone();
    let export = export_of(stent.backend().as_ref(), record).await?;
    match replayer.replay(&export).await {
        Ok(report) if report.is_clean() => Ok(Verdict::Clean(
            (status == ExecutionStatus::Paused).then_some(id),
        )),
        Ok(report) => Ok(Verdict::Diverged(Box::new(WouldPause {
            execution: id,
            function,
            status,
            report,
        }))),
        Err(DebugError::Engine(Error::UnregisteredFunction { function_name, .. })) => {
            Ok(Verdict::Missing(MissingFunction {
                execution: id,
                status,
                function: function_name,
            }))
        }
        Err(e) => Err(e),
    }
}
