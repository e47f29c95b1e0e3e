//! What the networked transports share: a bounded outbox drained by one
//! publishing task (coalescing whatever queued up into one batch), one
//! listening task feeding every started sink, and reconnection with
//! backoff for both. Nothing here ever fails a caller: a message that
//! cannot be sent is dropped and logged, which costs only latency.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::NotificationSink;

/// Messages waiting to be published, at most; more are dropped.
const OUTBOX_CAPACITY: usize = 4096;
/// Most messages sent in one batch.
const BATCH: usize = 512;
/// First and longest pause before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pub/sub connection pair of one kind (Redis, PostgreSQL).
pub(crate) trait Transport: Send + Sync + 'static {
    /// A connection that publishes.
    type Publisher: Send + 'static;
    /// A connection subscribed to the channel.
    type Listener: Send + 'static;

    /// What to call it in logs.
    fn name(&self) -> &'static str;

    /// Opens a publishing connection.
    fn connect_publisher(&self) -> impl Future<Output = Result<Self::Publisher, String>> + Send;

    /// Publishes `batch` (distinct messages) on the channel.
    fn publish(
        &self,
        publisher: &mut Self::Publisher,
        batch: &[String],
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Opens a connection subscribed to the channel.
    fn connect_listener(&self) -> impl Future<Output = Result<Self::Listener, String>> + Send;

    /// The next message; `Ok(None)` when the connection ended.
    fn next(
        &self,
        listener: &mut Self::Listener,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// The shared state of one networked notifier. Dropping it (with the last
/// clone of the notifier) stops both tasks.
pub(crate) struct Relay {
    outbox: mpsc::Sender<String>,
    outbox_rx: Mutex<Option<mpsc::Receiver<String>>>,
    sinks: Arc<Mutex<Vec<NotificationSink>>>,
    started: AtomicBool,
    shutdown: watch::Sender<()>,
    dropped: Arc<AtomicBool>,
    /// Messages queued and not yet handed to the transport (or dropped).
    pending: Arc<Pending>,
}

/// Counts queued messages; wakes `flush` callers when none is left.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    drained: Notify,
}

impl Pending {
    fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.drained.notify_waiters();
        }
    }
}

impl Relay {
    pub fn new() -> Relay {
        let (outbox, rx) = mpsc::channel(OUTBOX_CAPACITY);
        Relay {
            outbox,
            outbox_rx: Mutex::new(Some(rx)),
            sinks: Arc::default(),
            started: AtomicBool::new(false),
            shutdown: watch::Sender::new(()),
            dropped: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// Adds a sink; the first call starts the publishing and listening tasks.
    pub fn start<T: Transport>(&self, transport: &Arc<T>, sink: NotificationSink) {
        lock(&self.sinks).push(sink);
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(rx) = lock(&self.outbox_rx).take() {
            tokio::spawn(publish_loop(
                transport.clone(),
                rx,
                self.pending.clone(),
                self.shutdown.subscribe(),
            ));
        }
        tokio::spawn(listen_loop(
            transport.clone(),
            self.sinks.clone(),
            self.shutdown.subscribe(),
        ));
    }

    /// Queues a message; drops it if the outbox is full.
    pub fn publish(&self, message: &str) {
        self.pending.count.fetch_add(1, Ordering::SeqCst);
        if self.outbox.try_send(message.to_string()).is_ok() {
            return;
        }
        self.pending.done(1);
        if !self.dropped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "notification outbox full: dropping notifications (workers fall back to polling)"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

async fn connect<F, C>(name: &str, what: &str, connecting: F) -> Result<C, String>
where
    F: Future<Output = Result<C, String>>,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{name} {what}: no connection within {CONNECT_TIMEOUT:?}"
        )),
    }
}

impl Relay {
    /// Resolves when every message queued so far was sent or given up on,
    /// or after a few seconds at most (a transport that cannot connect).
    pub async fn flush(&self) {
        let wait = async {
            loop {
                let drained = self.pending.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if self.pending.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                drained.await;
            }
        };
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, wait).await;
    }
}

/// Sends queued messages, batch by batch, until the notifier is dropped.
async fn publish_loop<T: Transport>(
    transport: Arc<T>,
    mut rx: mpsc::Receiver<String>,
    pending: Arc<Pending>,
    mut shutdown: watch::Receiver<()>,
) {
    let name = transport.name();
    let mut publisher: Option<T::Publisher> = None;
    let mut backoff = BACKOFF_MIN;
    let mut batch: Vec<String> = Vec::new();
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        batch.clear();
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let taken = batch.len();
        batch.sort_unstable();
        batch.dedup();
        if publisher.is_none() {
            match connect(name, "publisher", transport.connect_publisher()).await {
                Ok(p) => {
                    tracing::debug!("{name} notifications: publisher connected");
                    publisher = Some(p);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "{name} notifications: cannot connect the publisher; dropping {} message(s)", batch.len());
                    pending.done(taken);
                    if pause(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_mut() else {
            pending.done(taken);
            continue;
        };
        let sent = transport.publish(p, &batch).await;
        pending.done(taken);
        match sent {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "{name} notifications: publish failed; reconnecting");
                publisher = None;
                if pause(backoff, &mut shutdown).await {
                    return;
                }
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Hands received messages to the sinks until the notifier is dropped or
/// every sink is closed; reconnects with backoff whenever the subscription
/// is lost.
async fn listen_loop<T: Transport>(
    transport: Arc<T>,
    sinks: Arc<Mutex<Vec<NotificationSink>>>,
    mut shutdown: watch::Receiver<()>,
) {
    let name = transport.name();
    let mut backoff = BACKOFF_MIN;
    loop {
        let connecting = connect(name, "listener", transport.connect_listener());
        let mut listener = tokio::select! {
            r = connecting => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "{name} notifications: cannot subscribe; workers poll meanwhile");
                    if pause(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        tracing::debug!("{name} notifications: listening");
        backoff = BACKOFF_MIN;
        // What was published while no subscription was open is lost: have
        // everything that waits check storage once.
        {
            let mut sinks = lock(&sinks);
            sinks.retain(|s| !s.is_closed());
            for s in sinks.iter() {
                s.resubscribed();
            }
        }
        loop {
            let message = tokio::select! {
                m = transport.next(&mut listener) => m,
                _ = shutdown.changed() => return,
            };
            match message {
                Ok(Some(m)) => {
                    let mut sinks = lock(&sinks);
                    sinks.retain(|s| !s.is_closed());
                    if sinks.is_empty() {
                        return;
                    }
                    for s in sinks.iter() {
                        s.deliver(&m);
                    }
                }
                Ok(None) => {
                    tracing::warn!("{name} notifications: subscription lost; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{name} notifications: subscription failed; reconnecting");
                    break;
                }
            }
        }
        if pause(backoff, &mut shutdown).await {
            return;
        }
        backoff = next_backoff(backoff);
    }
}

/// Sleeps `d`; true if the notifier was dropped meanwhile.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<()>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}
