//! Wake-ups across processes through Redis pub/sub.

use std::sync::Arc;

use futures_util::StreamExt;

use super::relay::{Relay, Transport};
use super::{NotificationBackend, NotificationSink};
use crate::error::{Error, Result};

/// Wake-ups across processes and hosts through Redis pub/sub (`PUBLISH` /
/// `SUBSCRIBE` on one channel, default `stent:notifications`).
///
/// Every process of a deployment gives its executor a `RedisNotifier` on
/// the same Redis and channel: a dispatch in one process wakes idle workers
/// in all of them, and an execution ending on any worker wakes the
/// `wait_for` callers wherever they are. Publishing never waits for Redis
/// (messages queue and go out in batches from a task of their own), and a
/// lost Redis connection is logged and reopened with backoff while workers
/// fall back to polling; nothing fails. Redis keeps no data for stent.
///
/// ```no_run
/// # async fn demo() -> Result<(), stent::Error> {
/// use stent::notifications::RedisNotifier;
///
/// let backend = stent::backends::SqliteBackend::open("stent.db").await?;
/// let notifier = RedisNotifier::new("redis://127.0.0.1:6379")?.channel("shop:stent");
/// let executor = stent::Stent::builder(backend).notification_backend(notifier).build();
/// # let _ = executor;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisNotifier {
    transport: Arc<RedisTransport>,
    relay: Arc<Relay>,
}

impl std::fmt::Debug for RedisNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNotifier")
            .field("channel", &self.transport.channel)
            .finish_non_exhaustive()
    }
}

struct RedisTransport {
    client: redis::Client,
    channel: String,
}

impl RedisNotifier {
    /// A notifier on the Redis at `url` (`redis://[user:password@]host:port[/db]`).
    /// Checks the URL only; connections open when the executor first needs
    /// them, and are reopened whenever they are lost.
    pub fn new(url: &str) -> Result<RedisNotifier> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::InvalidConfig(format!("Redis URL {url:?}: {e}")))?;
        Ok(RedisNotifier {
            transport: Arc::new(RedisTransport {
                client,
                channel: "stent:notifications".into(),
            }),
            relay: Arc::new(Relay::new()),
        })
    }

    /// Publish and subscribe on this channel instead of
    /// `stent:notifications` (one per stent installation sharing a Redis).
    pub fn channel(self, channel: impl Into<String>) -> RedisNotifier {
        RedisNotifier {
            transport: Arc::new(RedisTransport {
                client: self.transport.client.clone(),
                channel: channel.into(),
            }),
            relay: Arc::new(Relay::new()),
        }
    }
}

impl NotificationBackend for RedisNotifier {
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

impl Transport for RedisTransport {
    type Publisher = redis::aio::MultiplexedConnection;
    type Listener = redis::aio::PubSubStream;

    fn name(&self) -> &'static str {
        "Redis"
    }

    async fn connect_publisher(&self) -> Result<Self::Publisher, String> {
        self.client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())
    }

    async fn publish(
        &self,
        publisher: &mut Self::Publisher,
        batch: &[String],
    ) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for m in batch {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(m).ignore();
        }
        pipe.query_async::<()>(publisher)
            .await
            .map_err(|e| e.to_string())
    }

    async fn connect_listener(&self) -> Result<Self::Listener, String> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| e.to_string())?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pubsub.into_on_message())
    }

    async fn next(&self, listener: &mut Self::Listener) -> Result<Option<String>, String> {
        loop {
            let Some(msg) = listener.next().await else {
                return Ok(None);
            };
            match msg.get_payload::<String>() {
                Ok(text) => return Ok(Some(text)),
                Err(e) => tracing::debug!(error = %e, "Redis notifications: ignoring a message"),
            }
        }
    }
}
