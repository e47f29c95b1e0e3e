//! Connections commits and execution creations keep out of the pool
//! between their statements.
//!
//! sqlx pings every connection given back to its pool (on a task of its
//! own) before another caller may take it. A commit that took its
//! connection from the pool and gave it back so cost a second round trip
//! beside its statement, and, on a small machine, the server's and the
//! client's wake-ups for it: the floor's statement sent through a pool ran
//! 2,007–2,227 commits/s, on one connection 2,291–2,595
//! (docs/performance.md). So commits and execution creations keep up to
//! `keep` connections checked out (the backend: a quarter of its pool for
//! each, [`kept_for`]) and hand them from one statement to the next:
//!
//! - a connection is kept only after its statement was answered by the
//!   server (a success, or an error the server raised, which leaves it
//!   ready for the next); after an I/O error, or a statement that did not
//!   finish, it is closed, and the next commit takes a fresh one;
//! - a kept connection idle for longer than `check_idle_for` is pinged
//!   before its next use, as the pool checks its own
//!   ([`PostgresBuilder::check_connections`](crate::PostgresBuilder::check_connections));
//! - kept connections count against the pool's size, and go back to it when
//!   the pool is closed (by [`PostgresBackend::close`](crate::PostgresBackend::close)
//!   or the pool's own `close`, which would otherwise wait for them) or the
//!   backend is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgQueryResult};
use sqlx::{PgPool, Postgres};
use tokio::time::Instant;

/// How many connections a pool of `max_connections` keeps out: as many as
/// commits and as many as creations run at once (group commit gives each
/// kind a quarter of the pool), so that claims, renewals and reads always
/// find half of it; none below four connections, where one kept would hold
/// a large share (with one connection, all of it, and every other call
/// would wait for its acquire timeout).
pub(crate) fn kept_for(max_connections: u32) -> usize {
    2 * (max_connections / 4) as usize
}

/// The connections kept for commits and creations; see the module docs.
pub(crate) struct Keeper {
    pool: PgPool,
    kept: Mutex<Vec<Kept>>,
    keep: usize,
    check_idle_for: Option<Duration>,
    /// Whether a task waits for the pool's closing to give the kept
    /// connections back.
    watching: AtomicBool,
}

struct Kept {
    conn: PoolConnection<Postgres>,
    since: Instant,
}

/// A connection taken for one commit's statement; give it back with
/// [`Held::done`]. Dropped without it, it goes back to the pool the usual
/// way (sqlx pings it first, and closes it if that fails).
pub(crate) struct Held<'a> {
    keeper: &'a Arc<Keeper>,
    conn: PoolConnection<Postgres>,
}

impl Keeper {
    /// Keeps up to `keep` connections of `pool`; pings one idle for
    /// `check_idle_for` or longer before handing it out.
    pub(crate) fn new(pool: PgPool, keep: usize, check_idle_for: Option<Duration>) -> Arc<Keeper> {
        Arc::new(Keeper {
            pool,
            kept: Mutex::new(Vec::new()),
            keep,
            check_idle_for,
            watching: AtomicBool::new(false),
        })
    }

    /// A kept connection, or one from the pool.
    pub(crate) async fn take(self: &Arc<Self>) -> Result<Held<'_>, sqlx::Error> {
        loop {
            let kept = self.lock().pop();
            let Some(Kept { mut conn, since }) = kept else {
                break;
            };
            if self.pool.is_closed() {
                continue;
            }
            if self
                .check_idle_for
                .is_some_and(|idle| since.elapsed() >= idle)
                && Box::pin(sqlx::Connection::ping(&mut *conn)).await.is_err()
            {
                conn.close_on_drop();
                continue;
            }
            return Ok(Held { keeper: self, conn });
        }
        // Boxed: sqlx's acquire is a future of about 13 KB, and it is the
        // rare path here; held inline it made every commit's future that
        // large, copied whole each time one was boxed or spawned.
        let conn = Box::pin(self.pool.acquire()).await?;
        Ok(Held { keeper: self, conn })
    }

    /// The pool the connections come from.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `query` on a kept connection (or one from the pool) and keeps
    /// it for the next statement if the server answered.
    pub(crate) async fn execute<'q>(
        self: &Arc<Self>,
        query: sqlx::query::Query<'q, Postgres, PgArguments>,
    ) -> Result<PgQueryResult, sqlx::Error> {
        let mut held = self.take().await?;
        let result = query.execute(held.conn()).await;
        held.done(answered(&result));
        result
    }

    /// Gives every kept connection back to the pool.
    pub(crate) fn release(&self) {
        drop(std::mem::take(&mut *self.lock()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts, once, the task that gives the kept connections back when the
    /// pool is closed, so that its `close` does not wait for them forever.
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let closed = self.pool.close_event();
        let keeper: Weak<Keeper> = Arc::downgrade(self);
        tokio::spawn(async move {
            closed.await;
            if let Some(keeper) = keeper.upgrade() {
                keeper.release();
            }
        });
    }
}

impl Held<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Gives the connection back after its statement: kept for the next
    /// commit if the server `answered` it ([`answered`]) and fewer than
    /// `keep` are kept, else to the pool, or closed if it was not answered.
    pub(crate) fn done(self, answered: bool) {
        let Held { keeper, mut conn } = self;
        if !answered {
            conn.close_on_drop();
            return;
        }
        // Nothing to keep it for: back to the pool, as any connection.
        if keeper.keep == 0
            || keeper.pool.is_closed()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        keeper.watch();
        let mut kept = keeper.lock();
        if kept.len() < keeper.keep {
            kept.push(Kept {
                conn,
                since: Instant::now(),
            });
        }
    }
}

/// Whether a statement's outcome came from the server, so that its
/// connection is ready for the next: a success, or an error the server
/// raised (a lost lease, a conflict, a deadlock).
fn answered<T>(result: &Result<T, sqlx::Error>) -> bool {
    matches!(result, Ok(_) | Err(sqlx::Error::Database(_)))
}

impl Drop for Keeper {
    /// Gives the kept connections back; outside a runtime, where the pool
    /// could not take them back (it pings on a task), closes them.
    fn drop(&mut self) {
        let kept = std::mem::take(self.kept.get_mut().unwrap_or_else(PoisonError::into_inner));
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        for Kept { conn, .. } in kept {
            if in_runtime {
                drop(conn);
            } else {
                drop(conn.detach());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pools_keep_no_connection_and_larger_ones_half_at_most() {
        assert_eq!([1, 3, 4, 7, 10, 20].map(kept_for), [0, 0, 2, 2, 4, 10]);
    }
}
