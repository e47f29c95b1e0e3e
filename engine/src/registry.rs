//! Durable functions by name: the [`DurableFn`] trait the `#[durable]`
//! attribute implements, its options, and the registries that map names to
//! runnable entries.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use stent_journal::store::Routing;
use stent_journal::{CodecError, Failure, Payload, PayloadLimits, Serializer};
use stent_replay::InvocationFuture;

use crate::error::Error;

/// A boxed, sendable future (what durable bodies are turned into).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Computes an idempotency key from `(function, version, encoded arguments)`.
pub type IdempotencyKeyFn = fn(&str, Option<&str>, &Payload) -> Result<String, Error>;

/// Decides from an encoded error whether it is worth retrying.
pub type RetryPredicate = Arc<dyn Fn(&Payload) -> bool + Send + Sync>;

/// How a failing durable function is retried.
///
/// Delays are honoured through the task's scheduled time: the worker is free
/// meanwhile, and the retry survives restarts.
///
/// ```
/// use std::time::Duration;
/// use stent::RetryPolicy;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum ApiError { Timeout, BadRequest }
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .initial_delay(Duration::from_secs(1))
///     .retry_for(|e: &ApiError| matches!(e, ApiError::Timeout));
/// assert_eq!(policy.max_attempts, 5);
/// ```
///
/// The fields are public to read; the struct is `#[non_exhaustive]`, so it
/// is built with [`RetryPolicy::default`] and the setters, and options can be
/// added without breaking callers.
#[derive(Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts, the first one included.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Multiplier applied to the delay after each retry.
    pub backoff_factor: f64,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Spread delays by up to this fraction (0.0 to 1.0), so that many
    /// failing calls do not retry in lockstep.
    pub jitter: f64,
    /// Which errors are retried (`None`: all). Panics are always retried.
    pub retry_for: Option<RetryPredicate>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_delay", &self.initial_delay)
            .field("backoff_factor", &self.backoff_factor)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("retry_for", &self.retry_for.as_ref().map(|_| "<predicate>"))
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            backoff_factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.0,
            retry_for: None,
        }
    }
}

impl RetryPolicy {
    /// Sets the total attempts, the first one included.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the multiplier applied to the delay after each retry.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// Sets the upper bound of the delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the fraction (0.0 to 1.0) by which delays are spread.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Retries only the errors for which `predicate` holds (the seed's
    /// `retry_for`); others fail the call at once. An error that does not
    /// decode as `E` is retried.
    pub fn retry_for<E, F>(mut self, predicate: F) -> Self
    where
        E: DeserializeOwned + 'static,
        F: Fn(&E) -> bool + Send + Sync + 'static,
    {
        self.retry_for = Some(Arc::new(move |p: &Payload| {
            p.decode::<E>().map(|e| predicate(&e)).unwrap_or(true)
        }));
        self
    }

    /// Whether a failure is worth another attempt.
    pub fn retries(&self, failure: &Failure) -> bool {
        match failure {
            Failure::Error { error } => self.retry_for.as_ref().is_none_or(|p| p(error)),
            Failure::Panic { .. } => true,
            // The engine could not go on (for example a recorded value no
            // longer decodes): trying again gives the same answer.
            Failure::Aborted { .. } => false,
        }
    }

    /// The delay before retry number `retry` (1 for the first), with
    /// deterministic jitter derived from `seed`.
    pub fn delay(&self, retry: u32, seed: &[u8]) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.backoff_factor.max(1.0).powi(exponent);
        let capped = base.min(self.max_delay.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = if jitter > 0.0 {
            let h = blake3::hash(seed);
            let unit = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8])) as f64
                / u64::MAX as f64;
            1.0 - jitter + 2.0 * jitter * unit
        } else {
            1.0
        };
        Duration::from_secs_f64(
            (capped * spread).min(self.max_delay.as_secs_f64() * (1.0 + jitter)),
        )
    }
}

/// The options of `#[durable(...)]`, as the seed API names them.
pub struct DurableOptions<A: 'static> {
    /// Share results across executions, keyed by the call key.
    pub cached: bool,
    /// Retries on failure.
    pub retry_policy: Option<RetryPolicy>,
    /// Tags for worker filtering.
    pub tags: &'static [&'static str],
    /// Higher runs first.
    pub priority: i32,
    /// Queue for routing.
    pub queue: Option<&'static str>,
    /// Run at most once per idempotency key.
    pub idempotent: bool,
    /// Computes the idempotency key from the arguments.
    pub idempotency_key_func: Option<fn(&A) -> String>,
    /// Version string, part of the call key.
    pub version: Option<&'static str>,
    /// Cluster-wide concurrency limit.
    pub max_concurrent: Option<u32>,
}

impl<A: 'static> DurableOptions<A> {
    /// No option set: what `#[durable]` without arguments declares. For a
    /// hand-written [`DurableFn`]: `DurableOptions { priority: 5, ..DurableOptions::new() }`.
    pub const fn new() -> Self {
        DurableOptions {
            cached: false,
            retry_policy: None,
            tags: &[],
            priority: 0,
            queue: None,
            idempotent: false,
            idempotency_key_func: None,
            version: None,
            max_concurrent: None,
        }
    }
}

impl<A: 'static> Default for DurableOptions<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// A durable function. Implemented by `#[stent::durable]`; you rarely write it by hand.
pub trait DurableFn: Send + Sync + 'static {
    /// The arguments, as a tuple.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The `Ok` type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The `Err` type.
    type Error: Serialize + DeserializeOwned + Send + 'static;
    /// The registered name, `module::path::function`.
    const NAME: &'static str;
    /// Declared options.
    fn options() -> DurableOptions<Self::Args>;
    /// Runs the body.
    fn run(args: Self::Args) -> BoxFuture<Result<Self::Output, Self::Error>>;
}

/// A registered function, with its types erased.
pub struct FunctionEntry {
    /// Registered name.
    pub name: &'static str,
    /// Version, part of call keys.
    pub version: Option<&'static str>,
    /// Default routing of its tasks.
    pub routing: Routing,
    /// Retry policy, if any.
    pub retry_policy: Option<RetryPolicy>,
    /// Cluster-wide concurrency limit, if any.
    pub max_concurrent: Option<u32>,
    /// Results shared across executions by call key.
    pub cached: bool,
    /// For `idempotent` functions: the idempotency key of encoded arguments.
    pub idempotency_key: Option<IdempotencyKeyFn>,
    invoke: Invoke,
}

/// Starts a function's body on encoded arguments.
pub(crate) type Invoke = Arc<dyn Fn(Payload) -> InvocationFuture + Send + Sync>;

impl std::fmt::Debug for FunctionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionEntry")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("routing", &self.routing)
            .finish_non_exhaustive()
    }
}

impl FunctionEntry {
    /// The entry of `D`.
    pub fn of<D: DurableFn>() -> FunctionEntry {
        let o = D::options();
        FunctionEntry {
            name: D::NAME,
            version: o.version,
            routing: Routing {
                queue: o
                    .queue
                    .unwrap_or(stent_journal::store::DEFAULT_QUEUE)
                    .to_string(),
                priority: o.priority,
                tags: o.tags.iter().map(|t| t.to_string()).collect(),
            },
            retry_policy: o.retry_policy,
            max_concurrent: o.max_concurrent,
            cached: o.cached,
            idempotency_key: o.idempotent.then_some(idempotency_key::<D> as _),
            invoke: Arc::new(invoke::<D>),
        }
    }

    /// A copy of this entry whose body is `wrap(the original invoke, args)`,
    /// with the retry policy `policy` (the simulation harness injects
    /// faults and counts body runs through this).
    #[cfg(feature = "testing")]
    pub(crate) fn wrapped(
        &self,
        policy: Option<RetryPolicy>,
        wrap: impl Fn(&Invoke, Payload) -> InvocationFuture + Send + Sync + 'static,
    ) -> FunctionEntry {
        let original = self.invoke.clone();
        FunctionEntry {
            name: self.name,
            version: self.version,
            routing: self.routing.clone(),
            retry_policy: policy,
            max_concurrent: self.max_concurrent,
            cached: self.cached,
            idempotency_key: self.idempotency_key,
            invoke: Arc::new(move |args| wrap(&original, args)),
        }
    }

    /// Starts the body on encoded arguments.
    pub fn invoke(&self, args: Payload) -> InvocationFuture {
        (self.invoke)(args)
    }
}

/// The idempotency key of a call of `D`: its `idempotency_key_func` of the
/// arguments, or else the call key (function, version and arguments).
fn idempotency_key<D: DurableFn>(
    function: &str,
    version: Option<&str>,
    args: &Payload,
) -> Result<String, Error> {
    match D::options().idempotency_key_func {
        Some(f) => {
            let args: D::Args = args.decode()?;
            Ok(f(&args))
        }
        None => Ok(stent_journal::CallKey::new(function, version, args).to_hex()),
    }
}

fn invoke<D: DurableFn>(args: Payload) -> InvocationFuture {
    Box::pin(async move {
        let args: D::Args = args.decode().map_err(|e| Failure::Aborted {
            message: format!("arguments of {} do not decode: {e}", D::NAME),
        })?;
        let outcome = D::run(args).await;
        // The engine polls the body inside its invocation's context, which
        // knows the executor's serializer and limits; a direct poll (tests)
        // uses CBOR and the default limits.
        let (serializer, limits) = stent_replay::Context::current()
            .map(|ctx| (ctx.serializer(), ctx.value_limits()))
            .unwrap_or_else(|| (Serializer::default(), PayloadLimits::default().for_values()));
        // A value too large or too deep to be read back is never stored:
        // the call fails instead, saying why.
        let storable = |what: &str, value: Result<Payload, CodecError>| {
            value
                .and_then(|p| p.check(limits).map(|()| p))
                .map_err(|e| Failure::Aborted {
                    message: format!(
                        "the {what} of {} cannot be stored: {e}{}",
                        D::NAME,
                        match e {
                            CodecError::TooLarge { .. } | CodecError::TooDeep { .. } => {
                                " (keep large data elsewhere and return a reference to it)"
                            }
                            _ => "",
                        }
                    ),
                })
        };
        match outcome {
            Ok(v) => storable("result", serializer.encode(&v)),
            Err(e) => Err(match storable("error", serializer.encode(&e)) {
                Ok(error) => Failure::Error { error },
                Err(failure) => failure,
            }),
        }
    })
}

/// An entry of the global registry, submitted by `#[durable]`.
#[doc(hidden)]
pub struct Registration {
    make: fn() -> FunctionEntry,
}

impl Registration {
    /// The registration of `D`.
    pub const fn new<D: DurableFn>() -> Registration {
        Registration {
            make: FunctionEntry::of::<D>,
        }
    }
}

inventory::collect!(Registration);

/// Maps function names to runnable entries.
///
/// [`FunctionRegistry::global`] holds every `#[durable]` function of the
/// program; build your own to let a worker serve only some of them. Every
/// worker also serves the engine's built-in
/// [`RunCompensations`](crate::RunCompensations), whatever its registry.
#[derive(Debug, Default, Clone)]
pub struct FunctionRegistry {
    entries: BTreeMap<&'static str, Arc<FunctionEntry>>,
}

/// The engine's own durable functions, served by every worker whatever its
/// registry (they are not listed by [`FunctionRegistry::names`]).
fn builtin(name: &str) -> Option<Arc<FunctionEntry>> {
    static BUILTINS: OnceLock<Vec<Arc<FunctionEntry>>> = OnceLock::new();
    BUILTINS
        .get_or_init(|| {
            vec![Arc::new(FunctionEntry::of::<
                crate::compensation::RunCompensations,
            >())]
        })
        .iter()
        .find(|e| e.name == name)
        .cloned()
}

const BUILTIN_NAMES: &[&str] = &[<crate::compensation::RunCompensations as DurableFn>::NAME];

impl FunctionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry of every `#[durable]` function linked into the program.
    pub fn global() -> Arc<FunctionRegistry> {
        static GLOBAL: OnceLock<Arc<FunctionRegistry>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let mut r = FunctionRegistry::new();
                for reg in inventory::iter::<Registration> {
                    r.insert((reg.make)());
                }
                Arc::new(r)
            })
            .clone()
    }

    pub(crate) fn insert(&mut self, entry: FunctionEntry) {
        self.entries.insert(entry.name, Arc::new(entry));
    }

    /// Registers a durable function by passing the function itself:
    /// `registry.register(process_item)`.
    pub fn register<F, M>(&mut self, _function: F) -> &mut Self
    where
        F: crate::call::IntoDefinition<M>,
    {
        self.insert(FunctionEntry::of::<F::Def>());
        self
    }

    /// Registers `D` by type.
    pub fn register_def<D: DurableFn>(&mut self) -> &mut Self {
        self.insert(FunctionEntry::of::<D>());
        self
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Result<Arc<FunctionEntry>, Error> {
        self.entries
            .get(name)
            .cloned()
            .or_else(|| builtin(name))
            .ok_or_else(|| Error::UnregisteredFunction {
                function_name: name.to_string(),
                registered: self.names(),
            })
    }

    /// True if `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// `(name, max_concurrent)` of the functions that declare a limit.
    pub fn concurrency_limits(&self) -> Vec<(String, u32)> {
        self.entries
            .values()
            .filter_map(|e| e.max_concurrent.map(|m| (e.name.to_string(), m)))
            .collect()
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().map(|k| k.to_string()).collect()
    }

    /// The names a worker with this registry claims: the registered ones and
    /// the engine's built-ins.
    pub(crate) fn served_names(&self) -> Vec<String> {
        let mut names = self.names();
        names.extend(BUILTIN_NAMES.iter().map(|n| n.to_string()));
        names
    }
}
