//! Metrics hooks: what the engine reports as it works. The default records
//! nothing; [`MetricsFacade`] (feature `metrics`) forwards to the `metrics`
//! crate, so any exporter it supports (Prometheus, StatsD, …) works.

use std::time::Duration;

/// Receives the engine's events. Every method has an empty default, so an
/// implementation overrides only what it needs.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[derive(Default)]
/// struct CountFailures(AtomicU64);
///
/// impl stent::MetricsRecorder for CountFailures {
///     fn invocation_failed(&self, _function: &str, _took: std::time::Duration) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// ```
pub trait MetricsRecorder: Send + Sync + 'static {
    /// A worker claimed a task of `function` from storage.
    fn task_claimed(&self, function: &str) {
        let _ = function;
    }
    /// A worker started running an invocation of `function` (claimed, or
    /// started in-process).
    fn invocation_started(&self, function: &str) {
        let _ = function;
    }
    /// An invocation returned `Ok`, `took` after it started on this worker.
    fn invocation_completed(&self, function: &str, took: Duration) {
        let _ = (function, took);
    }
    /// An invocation failed for good (its error goes to its caller).
    fn invocation_failed(&self, function: &str, took: Duration) {
        let _ = (function, took);
    }
    /// An attempt failed and will be retried.
    fn invocation_retried(&self, function: &str) {
        let _ = function;
    }
    /// An invocation was dead-lettered.
    fn invocation_dead_lettered(&self, function: &str) {
        let _ = function;
    }
}

/// Records nothing (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl MetricsRecorder for NoMetrics {}

/// Forwards to the `metrics` crate facade: counters
/// `stent_tasks_claimed_total`, `stent_invocations_started_total`,
/// `stent_invocations_completed_total`, `stent_invocations_failed_total`,
/// `stent_invocations_retried_total`, `stent_invocations_dead_lettered_total`
/// and the histogram `stent_invocation_seconds` (label `outcome`), all
/// labelled with `function`.
#[cfg(feature = "metrics")]
#[derive(Debug, Default, Clone, Copy)]
pub struct MetricsFacade;

#[cfg(feature = "metrics")]
impl MetricsRecorder for MetricsFacade {
    fn task_claimed(&self, function: &str) {
        metrics::counter!("stent_tasks_claimed_total", "function" => function.to_string())
            .increment(1);
    }
    fn invocation_started(&self, function: &str) {
        metrics::counter!("stent_invocations_started_total", "function" => function.to_string())
            .increment(1);
    }
    fn invocation_completed(&self, function: &str, took: Duration) {
        metrics::counter!("stent_invocations_completed_total", "function" => function.to_string())
            .increment(1);
        metrics::histogram!("stent_invocation_seconds", "function" => function.to_string(), "outcome" => "completed")
            .record(took.as_secs_f64());
    }
    fn invocation_failed(&self, function: &str, took: Duration) {
        metrics::counter!("stent_invocations_failed_total", "function" => function.to_string())
            .increment(1);
        metrics::histogram!("stent_invocation_seconds", "function" => function.to_string(), "outcome" => "failed")
            .record(took.as_secs_f64());
    }
    fn invocation_retried(&self, function: &str) {
        metrics::counter!("stent_invocations_retried_total", "function" => function.to_string())
            .increment(1);
    }
    fn invocation_dead_lettered(&self, function: &str) {
        metrics::counter!("stent_invocations_dead_lettered_total", "function" => function.to_string())
            .increment(1);
    }
}
