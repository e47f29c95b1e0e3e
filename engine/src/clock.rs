//! Where the engine reads the time. Workflow code never reads a clock
//! directly; it asks for `Stent::now()`, which is journaled.

use std::time::SystemTime;

use stent_journal::Timestamp;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// Wall-clock time anchored once, then advanced with tokio's clock.
///
/// Under `#[tokio::test(start_paused = true)]` tokio's clock is virtual, so
/// this clock moves with it: durable sleeps, leases and timeouts run in
/// virtual time without a single real wait.
#[derive(Debug, Clone)]
pub struct TokioClock {
    anchor_wall: i64,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored at the current system time.
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            anchor_wall: wall,
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.anchor);
        Timestamp(self.anchor_wall + elapsed.as_millis() as i64)
    }
}
