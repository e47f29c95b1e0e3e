//! The two transports that carry nothing between processes.

use super::NotificationBackend;

/// Wake-ups within this process only (the default): a dispatch wakes the
/// idle workers of this executor at once, and an execution that ends here
/// wakes its `wait_for` callers here. Workers and waiters in other
/// processes find the work (or the result) at their next poll.
///
/// ```no_run
/// # async fn demo() -> Result<(), stent::Error> {
/// let backend = stent::backends::SqliteBackend::open("stent.db").await?;
/// let executor = stent::Stent::builder(backend)
///     .notification_backend(stent::notifications::InProcessNotifier)
///     .build();
/// # let _ = executor;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessNotifier;

impl NotificationBackend for InProcessNotifier {}

/// No wake-ups at all, not even within this process: workers and
/// `wait_for` callers rely on polling with backoff alone. Slower, never
/// wrong — useful to check that nothing depends on a notification.
/// (Setting the environment variable `STENT_NOTIFICATIONS=none` makes it
/// the default of every builder that is given no notification backend.)
///
/// ```no_run
/// # async fn demo() -> Result<(), stent::Error> {
/// let backend = stent::backends::SqliteBackend::open("stent.db").await?;
/// let executor = stent::Stent::builder(backend)
///     .notification_backend(stent::notifications::NoNotifications)
///     .build();
/// # let _ = executor;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifications;

impl NotificationBackend for NoNotifications {
    fn in_process(&self) -> bool {
        false
    }
}
