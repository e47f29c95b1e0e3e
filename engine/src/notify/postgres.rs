//! Wake-ups across processes through PostgreSQL `LISTEN` / `NOTIFY`.

use std::sync::Arc;

use stent_postgres::{NotificationListener, PostgresBackend};

use super::relay::{Relay, Transport};
use super::{NotificationBackend, NotificationSink};

/// Wake-ups across processes and hosts through PostgreSQL `LISTEN` /
/// `NOTIFY` on the database the workers already share — no other server.
///
/// Messages go out with `pg_notify` on a pooled connection of the backend
/// (queued and sent in batches from a task of their own, so publishing
/// never waits), and come in on one extra connection per process that
/// `LISTEN`s on the backend's [`notification_channel`](PostgresBackend::notification_channel)
/// (per schema, so installations sharing a database stay apart). A lost
/// connection is logged and reopened with backoff while workers fall back
/// to polling; nothing fails.
///
/// ```no_run
/// # async fn demo() -> Result<(), stent::Error> {
/// use stent::backends::PostgresBackend;
/// use stent::notifications::PostgresNotifier;
///
/// let backend = PostgresBackend::connect("postgres://stent@db.internal/app").await?;
/// backend.init_db().await?;
/// let executor = stent::Stent::builder(backend.clone())
///     .notification_backend(PostgresNotifier::new(&backend))
///     .build();
/// # let _ = executor;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresNotifier {
    transport: Arc<PgTransport>,
    relay: Arc<Relay>,
}

impl std::fmt::Debug for PostgresNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresNotifier")
            .field("channel", &self.transport.channel)
            .finish_non_exhaustive()
    }
}

struct PgTransport {
    backend: PostgresBackend,
    channel: String,
}

impl PostgresNotifier {
    /// A notifier on `backend`'s database (sharing its connection pool for
    /// publishing), on the backend's own channel.
    pub fn new(backend: &PostgresBackend) -> PostgresNotifier {
        PostgresNotifier {
            transport: Arc::new(PgTransport {
                channel: backend.notification_channel(),
                backend: backend.clone(),
            }),
            relay: Arc::new(Relay::new()),
        }
    }

    /// The channel it publishes and listens on.
    pub fn channel(&self) -> &str {
        &self.transport.channel
    }
}

impl NotificationBackend for PostgresNotifier {
    fn start(&self, sink: NotificationSink) {
        self.relay.start(&self.transport, sink);
    }

    fn publish(&self, message: &str) {
        self.relay.publish(message);
    }

    fn flush(&self) -> super::BoxFuture<'_, ()> {
        Box::pin(self.relay.flush())
    }
}

impl Transport for PgTransport {
    /// Publishing borrows a pooled connection per batch.
    type Publisher = ();
    type Listener = NotificationListener;

    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    async fn connect_publisher(&self) -> Result<(), String> {
        Ok(())
    }

    async fn publish(&self, _: &mut (), batch: &[String]) -> Result<(), String> {
        self.backend
            .notify(&self.channel, batch)
            .await
            .map_err(|e| e.to_string())
    }

    async fn connect_listener(&self) -> Result<NotificationListener, String> {
        self.backend
            .listen(&self.channel)
            .await
            .map_err(|e| e.to_string())
    }

    async fn next(&self, listener: &mut NotificationListener) -> Result<Option<String>, String> {
        listener.recv().await.map_err(|e| e.to_string())
    }
}
