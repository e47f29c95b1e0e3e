//! Notifications: hints that wake idle workers when work is enqueued and
//! `wait_for` callers when an execution ends, in this process and — with
//! [`RedisNotifier`] or [`PostgresNotifier`] — in every other process
//! sharing the database.
//!
//! They only make things faster. Every worker also polls the backend with
//! exponential backoff (`poll_min_interval` … `poll_max_interval`), and every
//! `wait_for` polls too, so a lost, late or duplicated notification costs
//! latency, never correctness. [`NoNotifications`] switches them off
//! entirely, leaving the polling alone.
//!
//! The engine publishes a short ASCII message when
//! - an execution is dispatched (unless a worker of this process took it at
//!   once), a child invocation is spawned for any worker, a task is parked or
//!   released, or a dead letter is replayed — *work*;
//! - a task is scheduled to retry later — *work due at a time*;
//! - a signal is sent — *signal for an execution*;
//! - an execution ends or pauses — *finished*.
//!
//! A [`NotificationBackend`] is only the transport: it carries those
//! messages to the other processes and hands the ones it receives to the
//! [`NotificationSink`] it was started with. The engine encodes and decodes
//! them, and ignores its own when they come back.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() -> Result<(), stent::Error> {
//! use stent::Stent;
//! use stent::notifications::RedisNotifier;
//!
//! let backend = stent::backends::SqliteBackend::open("stent.db").await?;
//! let executor = Stent::builder(backend)
//!     .notification_backend(RedisNotifier::new("redis://127.0.0.1:6379")?)
//!     .build();
//! # let _ = executor;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Weak};

use stent_journal::{ExecutionId, Timestamp};

use crate::hub::Hub;

mod local;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod relay;

pub use local::{InProcessNotifier, NoNotifications};
#[cfg(feature = "postgres")]
pub use postgres::PostgresNotifier;
#[cfg(feature = "redis")]
pub use redis::RedisNotifier;

/// Carries the engine's wake-up hints between processes.
///
/// Implementations must never block or fail the caller: `publish` returns
/// at once (queue the message and send it from a task of your own), and a
/// transport that loses its connection logs it, reconnects with backoff and
/// carries on. Messages are short ASCII strings the transport never needs
/// to read.
///
/// ```
/// use stent::notifications::{NotificationBackend, NotificationSink};
/// use std::sync::{Arc, Mutex};
///
/// /// Delivers to every executor started with it, in this process.
/// #[derive(Default, Clone)]
/// struct Loopback(Arc<Mutex<Vec<NotificationSink>>>);
///
/// impl NotificationBackend for Loopback {
///     fn start(&self, sink: NotificationSink) {
///         self.0.lock().unwrap().push(sink);
///     }
///     fn publish(&self, message: &str) {
///         for sink in self.0.lock().unwrap().iter() {
///             sink.deliver(message);
///         }
///     }
/// }
/// ```
pub trait NotificationBackend: Send + Sync + 'static {
    /// Whether the executor wakes the workers and waiters of its own
    /// process directly, without the transport. Default `true`;
    /// [`NoNotifications`] says `false`.
    fn in_process(&self) -> bool {
        true
    }

    /// Starts carrying messages from other processes to `sink`. Called once
    /// per executor using this backend, inside a tokio runtime, before that
    /// executor's first [`publish`](Self::publish). Default: nothing (no
    /// other process is heard).
    fn start(&self, sink: NotificationSink) {
        let _ = sink;
    }

    /// Sends `message` to the other processes (and may echo it back to this
    /// one; the engine ignores its own). Returns at once; a message may be
    /// lost. Default: nothing.
    fn publish(&self, message: &str) {
        let _ = message;
    }

    /// Resolves once every message published so far has been handed to the
    /// transport (or given up on). A short-lived process — a command-line
    /// tool that sends a signal — waits for it before exiting, so its
    /// messages are not lost with it. Default: at once.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The future of [`NotificationBackend::flush`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl<T: NotificationBackend + ?Sized> NotificationBackend for Arc<T> {
    fn in_process(&self) -> bool {
        (**self).in_process()
    }
    fn start(&self, sink: NotificationSink) {
        (**self).start(sink)
    }
    fn publish(&self, message: &str) {
        (**self).publish(message)
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        (**self).flush()
    }
}

/// Where a [`NotificationBackend`] hands the messages it receives: one
/// executor's workers and waiters. Cheap to clone; holds the executor
/// weakly, so a transport keeping sinks does not keep executors alive.
#[derive(Clone)]
pub struct NotificationSink {
    pub(crate) hub: Weak<Hub>,
}

impl std::fmt::Debug for NotificationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSink")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl NotificationSink {
    /// Delivers one received message. Malformed messages and the executor's
    /// own are ignored.
    pub fn deliver(&self, message: &str) {
        if let Some(hub) = self.hub.upgrade() {
            hub.receive(message);
        }
    }

    /// The transport (re)subscribed: messages sent while it was not
    /// listening are lost, so every idle worker, waiter and waiting
    /// invocation of the executor checks storage once more. Call it each
    /// time a subscription is established, the first one included.
    pub fn resubscribed(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.resync();
        }
    }

    /// True once the executor this sink feeds is gone: a transport may drop
    /// the sink (and stop listening when it has none left).
    pub fn is_closed(&self) -> bool {
        self.hub.strong_count() == 0
    }
}

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notification {
    /// Claimable work may exist now (`due: None`) or from `due` on.
    Work { due: Option<Timestamp> },
    /// A signal was sent to the execution.
    Signal { execution: ExecutionId },
    /// The execution ended or paused.
    Finished { execution: ExecutionId },
}

/// A message on the wire: `"<origin hex> w"`, `"<origin> w <millis>"`,
/// `"<origin> s <execution>"` or `"<origin> f <execution>"`. The origin
/// identifies the publishing executor, which ignores its own messages.
pub(crate) fn encode(origin: u64, n: &Notification) -> String {
    match n {
        Notification::Work { due: None } => format!("{origin:x} w"),
        Notification::Work { due: Some(t) } => format!("{origin:x} w {}", t.millis()),
        Notification::Signal { execution } => format!("{origin:x} s {execution}"),
        Notification::Finished { execution } => format!("{origin:x} f {execution}"),
    }
}

/// Parses a message; `None` if it is not one of the engine's.
pub(crate) fn decode(message: &str) -> Option<(u64, Notification)> {
    let mut parts = message.split(' ');
    let origin = u64::from_str_radix(parts.next()?, 16).ok()?;
    let kind = parts.next()?;
    let arg = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let execution = || -> Option<ExecutionId> {
        let uuid = arg?.parse::<uuid::Uuid>().ok()?;
        Some(ExecutionId::from_uuid(uuid))
    };
    let n = match kind {
        "w" => Notification::Work {
            due: match arg {
                None => None,
                Some(ms) => Some(Timestamp(ms.parse().ok()?)),
            },
        },
        "s" => Notification::Signal {
            execution: execution()?,
        },
        "f" => Notification::Finished {
            execution: execution()?,
        },
        _ => return None,
    };
    Some((origin, n))
}

/// The notification backend of a builder that was given none:
/// [`InProcessNotifier`], or [`NoNotifications`] when the environment
/// variable `STENT_NOTIFICATIONS` is `none` (or `off`) — a switch for
/// checking that a deployment (or a test suite) works on polling alone.
pub(crate) fn default_backend() -> Arc<dyn NotificationBackend> {
    match std::env::var("STENT_NOTIFICATIONS").as_deref() {
        Ok("none") | Ok("off") => Arc::new(NoNotifications),
        _ => Arc::new(InProcessNotifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let id = ExecutionId::new_random();
        for n in [
            Notification::Work { due: None },
            Notification::Work {
                due: Some(Timestamp(1_700_000_000_123)),
            },
            Notification::Signal { execution: id },
            Notification::Finished { execution: id },
        ] {
            let text = encode(0xdead_beef, &n);
            assert_eq!(decode(&text), Some((0xdead_beef, n)), "{text}");
        }
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for text in [
            "",
            "zz w",
            "1 x",
            "1 w soon",
            "1 f not-a-uuid",
            "1 s",
            "1 w 5 extra",
        ] {
            assert_eq!(decode(text), None, "{text:?}");
        }
    }
}
