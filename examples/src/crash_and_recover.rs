//! Crash and recover: a worker *process* is killed with SIGKILL in the
//! middle of a multi-step workflow; a new worker process takes over, and the
//! steps that had completed are not run again.
//!
//! The dispatching program ([`run`]) starts a child worker process
//! ([`serve_worker`]) over the same SQLite file, waits until step 3 has
//! begun, kills the child, starts another one and waits for the result.
//! Every step appends `begin N` and `done N` (with the worker's pid) to a
//! log file outside the engine, and the program prints that log and the
//! root invocation's journal (`backend().read_journal(..)`): steps 1 and 2
//! ran once, step 3 began twice (the kill interrupted the first run — a step
//! runs *at least* once) and completed once, steps 4 and 5 ran once.
//!
//! The child workers use a 1 s lease, so the second one can claim the work
//! of the dead one a second after the kill.
//!
//! ```sh
//! cargo run -p stent-examples --example crash_and_recover
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stent::backends::SqliteBackend;
use stent::journal::Seq;
use stent::{ExecutionId, Stent};
use tokio::process::{Child, Command};

use crate::support::remove_db_files;

/// Steps of the workflow.
pub const STEPS: u32 = 5;

/// Simulated work per step.
pub const STEP_WORK: Duration = Duration::from_millis(400);

/// Appends `line` to the log file at `log` and syncs it, so that a SIGKILL
/// right after cannot lose it.
pub fn append_line(log: &str, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(f, "{line}")?;
    f.sync_data()
}

/// The lines of the step log (empty if it does not exist yet).
pub fn read_log(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// How many lines of `log` start with `prefix` followed by a space (as in
/// `begin 3 pid 1234`).
///
/// ```
/// let log = vec!["begin 3 pid 1".to_string(), "begin 3 pid 2".to_string()];
/// assert_eq!(stent_examples::crash_and_recover::count(&log, "begin 3"), 2);
/// assert_eq!(stent_examples::crash_and_recover::count(&log, "done 3"), 0);
/// ```
pub fn count(log: &[String], prefix: &str) -> usize {
    let prefix = format!("{prefix} ");
    log.iter().filter(|l| l.starts_with(&prefix)).count()
}

/// One step: logs `begin N`, works for `work_ms`, logs `done N`.
#[stent::durable]
pub async fn record_step(log: String, step: u32, work_ms: u64) -> Result<u32, String> {
    let pid = std::process::id();
    append_line(&log, &format!("begin {step} pid {pid}")).map_err(|e| e.to_string())?;
    println!("  [worker {pid}] step {step}: begin");
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    append_line(&log, &format!("done {step} pid {pid}")).map_err(|e| e.to_string())?;
    println!("  [worker {pid}] step {step}: done");
    Ok(step * 10)
}

/// The workflow: [`STEPS`] steps one after another; returns the sum of
/// their results.
#[stent::durable]
pub async fn multi_step(log: String, steps: u32) -> Result<u32, String> {
    let mut sum = 0;
    for step in 1..=steps {
        sum += record_step(log.clone(), step, STEP_WORK.as_millis() as u64).await?;
    }
    Ok(sum)
}

/// The child worker process: serves the SQLite database at `db` until
/// killed, with a 1 s lease (renewed every 250 ms) so that another worker
/// can take over soon after it dies.
pub async fn serve_worker(db: &Path) -> crate::Result<()> {
    let backend = SqliteBackend::open(db).await?;
    backend.init_db().await?;
    let executor = Stent::new(backend);
    println!("  [worker {}] started", std::process::id());
    executor
        .worker()
        .worker_id(format!("crash-demo-{}", std::process::id()))
        .lease_duration(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_millis(250))
        .poll_min_interval(Duration::from_millis(50))
        .poll_max_interval(Duration::from_millis(200))
        .serve()
        .await?;
    Ok(())
}

/// What [`run`] observed.
#[derive(Debug, Clone, PartialEq)]
pub struct CrashReport {
    /// The workflow's result.
    pub result: u32,
    /// The step log, in order.
    pub log: Vec<String>,
    /// The root invocation's journal kinds at the kill.
    pub journal_at_kill: Vec<String>,
    /// The root invocation's journal kinds at the end.
    pub journal_at_end: Vec<String>,
    /// Pids of the two worker processes.
    pub workers: (u32, u32),
}

/// Reads the root invocation's journal, prints one line per event (seq and
/// kind) and returns the kinds.
async fn print_journal(executor: &Stent, id: ExecutionId) -> crate::Result<Vec<String>> {
    let rows = executor
        .backend()
        .read_journal(id.root_invocation(), Seq(0))
        .await?;
    for row in &rows {
        println!("    seq {:>2}  {}", row.seq.0, row.kind);
    }
    Ok(rows.into_iter().map(|row| row.kind).collect())
}

async fn kill(child: &mut Child) -> crate::Result<()> {
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

/// Runs the example on the database `db` (recreated) and the step log
/// `log` (truncated). `worker` builds the command that starts a child
/// worker process; the database path is appended to its arguments, and the
/// child must call [`serve_worker`] on it.
pub async fn run(
    db: &Path,
    log: &Path,
    worker: impl Fn() -> Command,
) -> crate::Result<CrashReport> {
    remove_db_files(db)?;
    match std::fs::remove_file(log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let backend = SqliteBackend::open(db).await?;
    backend.init_db().await?;
    // No worker in this process: it only dispatches and watches. Waiting
    // polls the database (the workers are in other processes), often.
    let executor = Stent::builder(backend)
        .poll_max_interval(Duration::from_millis(200))
        .build();
    let log_s = log.to_string_lossy().to_string();
    let id = executor.dispatch(multi_step(log_s, STEPS)).await?;
    println!("dispatched a {STEPS}-step workflow: execution {id}");

    let spawn = || -> crate::Result<Child> {
        let mut command = worker();
        command.arg(db).kill_on_drop(true);
        Ok(command.spawn()?)
    };

    let mut first = spawn()?;
    let first_pid = first.id().unwrap_or(0);
    println!("started worker process {first_pid}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&read_log(log), "begin 3") == 0 {
        if tokio::time::Instant::now() > deadline {
            kill(&mut first).await?;
            return Err("step 3 did not begin within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill(&mut first).await?;
    println!("SIGKILLed worker process {first_pid} in the middle of step 3");
    println!("  the root's journal at the kill:");
    let journal_at_kill = print_journal(&executor, id).await?;

    let mut second = spawn()?;
    let second_pid = second.id().unwrap_or(0);
    println!(
        "started worker process {second_pid}; it takes over once the dead worker's 1 s lease expires"
    );
    let outcome = executor
        .wait_for::<u32, String>(id, Some(Duration::from_secs(60)))
        .await;
    kill(&mut second).await?;
    let result = outcome??;
    println!(
        "result: {result} (state: {})",
        executor.state_of(id).await?.state
    );

    let log_lines = read_log(log);
    println!("  the step log (written by the step bodies):");
    for line in &log_lines {
        println!("    {line}");
    }
    for step in 1..=STEPS {
        println!(
            "  step {step}: began {} time(s), completed {} time(s)",
            count(&log_lines, &format!("begin {step}")),
            count(&log_lines, &format!("done {step}"))
        );
    }
    println!("  the root's journal at the end:");
    let journal_at_end = print_journal(&executor, id).await?;
    Ok(CrashReport {
        result,
        log: log_lines,
        journal_at_kill,
        journal_at_end,
        workers: (first_pid, second_pid),
    })
}

/// The example's files in the current directory: the database and the step
/// log.
///
/// ```
/// let (db, log) = stent_examples::crash_and_recover::default_paths();
/// assert_eq!(db.to_str(), Some("stent-crash_and_recover.db"));
/// assert_eq!(log.to_str(), Some("stent-crash_and_recover.steps.log"));
/// ```
pub fn default_paths() -> (PathBuf, PathBuf) {
    (
        crate::support::db_path("crash_and_recover"),
        PathBuf::from("stent-crash_and_recover.steps.log"),
    )
}
