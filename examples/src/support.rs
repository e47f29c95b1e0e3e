//! Helpers shared by the examples: opening a fresh SQLite file, running a
//! worker in the same process, and small printing utilities.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stent::backends::SqliteBackend;
use stent::{Stent, WorkerBuilder, WorkerLifecycle};
use tokio::task::JoinHandle;

/// The error type of the examples: anything that went wrong, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of the examples.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// Removes `path` and its SQLite side files (`-wal`, `-shm`, `-journal`),
/// ignoring the ones that do not exist.
///
/// ```no_run
/// stent_examples::support::remove_db_files("stent-demo.db".as_ref()).unwrap();
/// ```
pub fn remove_db_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Opens a fresh SQLite database at `path` (deleting any previous one, so
/// reruns start clean), creates the schema and returns an executor over it.
///
/// ```no_run
/// # async fn demo() -> stent_examples::Result<()> {
/// let executor = stent_examples::support::fresh_sqlite("stent-demo.db").await?;
/// # let _ = executor;
/// # Ok(()) }
/// ```
pub async fn fresh_sqlite(path: impl AsRef<Path>) -> Result<Stent> {
    let path = path.as_ref();
    remove_db_files(path)?;
    let backend = SqliteBackend::open(path).await?;
    backend.init_db().await?;
    Ok(Stent::new(backend))
}

/// The database file of example `name`: `stent-NAME.db` in the current
/// directory.
///
/// ```
/// assert_eq!(
///     stent_examples::support::db_path("approval"),
///     std::path::PathBuf::from("stent-approval.db")
/// );
/// ```
pub fn db_path(name: &str) -> PathBuf {
    PathBuf::from(format!("stent-{name}.db"))
}

/// A new, empty directory under the system temp directory, named after
/// `prefix` and a random id (for tests and the crash example's files).
///
/// ```no_run
/// let dir = stent_examples::support::temp_dir("demo").unwrap();
/// assert!(dir.is_dir());
/// ```
pub fn temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "stent-examples-{prefix}-{}",
        stent::ExecutionId::new_random()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A worker running in this process, stopped with [`LocalWorker::stop`].
///
/// The examples' worker polls often (every 50 ms when idle, at most every
/// 500 ms), so delayed retries and freed concurrency slots are picked up
/// quickly.
///
/// ```no_run
/// # async fn demo(executor: stent::Stent) -> stent_examples::Result<()> {
/// use stent_examples::LocalWorker;
/// let worker = LocalWorker::start(&executor, |w| w.max_concurrency(32)).await;
/// // dispatch and wait for executions here
/// worker.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalWorker {
    lifecycle: WorkerLifecycle,
    handle: JoinHandle<stent::Result<()>>,
}

impl LocalWorker {
    /// Starts a worker over `executor`, configured by `configure`, and waits
    /// until it is ready to claim work.
    pub async fn start(
        executor: &Stent,
        configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
    ) -> LocalWorker {
        let lifecycle = executor.create_worker_lifecycle(None);
        let builder = executor
            .worker()
            .poll_min_interval(Duration::from_millis(50))
            .poll_max_interval(Duration::from_millis(500))
            .lifecycle(lifecycle.clone());
        let handle = tokio::spawn(configure(builder).serve());
        lifecycle.wait_until_ready().await;
        LocalWorker { lifecycle, handle }
    }

    /// Drains the worker (running invocations finish their current step or
    /// stay journaled) and waits until it stopped.
    pub async fn stop(self) -> Result<()> {
        self.lifecycle.request_drain();
        self.handle.await??;
        Ok(())
    }
}

/// Shortens a function's registered name (`crate::module::function`) to
/// its last segment, for printing.
///
/// ```
/// assert_eq!(stent_examples::support::short_name("a::b::book_car"), "book_car");
/// ```
pub fn short_name(function: &str) -> &str {
    function.rsplit("::").next().unwrap_or(function)
}

/// Prints one line per durable call of execution `id` (seq, function,
/// state, and whether it was answered from the cache), as `state_of`
/// reports them.
///
/// A call answered from the cache is journaled with its call key only, so
/// `state_of` does not know its function; `known` (calls of other
/// executions, typically the one that filled the cache) names it by its
/// call key.
pub async fn print_calls(
    executor: &Stent,
    id: stent::ExecutionId,
    known: &[stent::ExecutionProgress],
) -> Result<Vec<stent::ExecutionProgress>> {
    let state = executor.state_of(id).await?;
    for call in &state.progress {
        let name = call
            .function
            .as_deref()
            .or_else(|| {
                known
                    .iter()
                    .find(|k| k.call_key == call.call_key)
                    .and_then(|k| k.function.as_deref())
            })
            .map_or("(unknown)", short_name);
        let cached = if call.cached { "  (cache hit)" } else { "" };
        println!(
            "    seq {:>2}  {:<14} {}{cached}",
            call.seq.0, name, call.state
        );
    }
    Ok(state.progress)
}
