//! `LISTEN` / `NOTIFY` on the backend's database: the transport under the
//! engine's `PostgresNotifier`. Payloads are opaque text to this crate.

use sqlx::postgres::{PgListener, PgPoolOptions};
use stent_journal::store::StoreError;

use crate::PostgresBackend;

/// Longest channel name PostgreSQL keeps (longer identifiers are truncated).
const MAX_CHANNEL: usize = 63;

impl PostgresBackend {
    /// The notification channel of this installation: `stent` for the
    /// default schema, `stent.<schema>` with [`schema`](crate::PostgresBuilder::schema),
    /// so that installations sharing a database do not wake each other.
    pub fn notification_channel(&self) -> String {
        let mut channel = match &self.schema {
            Some(schema) => format!("stent.{schema}"),
            None => "stent".to_string(),
        };
        // Schema names are ASCII (checked by the builder): bytes are chars.
        channel.truncate(MAX_CHANNEL);
        channel
    }

    /// Sends each of `payloads` on `channel` with `pg_notify`, in one
    /// statement on a pooled connection; listeners get them once it
    /// commits. A payload must be shorter than 8000 bytes.
    pub async fn notify(&self, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1::text, p) FROM UNNEST($2::text[]) AS p")
            .bind(channel)
            .bind(payloads)
            .execute(&self.pool)
            .await
            .map_err(|e| crate::error::database_error("notify", e))?;
        Ok(())
    }

    /// A connection of its own (not taken from the pool) listening on
    /// `channel`, with the pool's connection settings.
    pub async fn listen(&self, channel: &str) -> Result<NotificationListener, StoreError> {
        let options = self.pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| crate::error::database_error("listen: connecting", e))?;
        listener.ignore_pool_close_event(true);
        listener
            .listen(channel)
            .await
            .map_err(|e| crate::error::database_error(format!("listen on {channel:?}"), e))?;
        Ok(NotificationListener { listener })
    }
}

/// A connection listening on one channel; see [`PostgresBackend::listen`].
pub struct NotificationListener {
    listener: PgListener,
}

impl std::fmt::Debug for NotificationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationListener")
            .finish_non_exhaustive()
    }
}

impl NotificationListener {
    /// The next notification's payload. `Ok(None)` means the connection was
    /// lost (notifications sent meanwhile are lost too); the next call
    /// reconnects and listens again. An error means reconnecting failed.
    pub async fn recv(&mut self) -> Result<Option<String>, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(n)) => Ok(Some(n.payload().to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(crate::error::database_error("listen", e)),
        }
    }
}
