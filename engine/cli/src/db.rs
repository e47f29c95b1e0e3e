//! Opening the database named by `--db`, never creating one.

use std::path::Path;

use stent::backends::{PostgresBackend, SqliteBackend};
use stent::journal::store::StoreError;
use stent::notifications::PostgresNotifier;
use stent::{ExecutionId, FunctionRegistry, Stent};

use crate::{CliError, GlobalArgs};

/// An executor over the database `--db` names: a `postgres://` (or
/// `postgresql://`) URL, or the path of an existing SQLite file.
pub(crate) async fn open(
    global: &GlobalArgs,
    registry: Option<FunctionRegistry>,
) -> Result<Stent, CliError> {
    let db = global.db.as_str();
    let builder = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let mut pg = PostgresBackend::builder(db).max_connections(4);
        if let Some(schema) = &global.schema {
            pg = pg.schema(schema.clone());
        }
        let backend = pg.build().await?;
        // Signals, cancellations and re-queued work wake the workers of
        // other processes through the database at once (workers that listen
        // with a PostgresNotifier; others find it at their next poll).
        Stent::builder(backend.clone()).notification_backend(PostgresNotifier::new(&backend))
    } else {
        let path = Path::new(db);
        if path.is_dir() {
            return Err(CliError::Invalid(format!(
                "{db:?} is a directory, not a SQLite database file; pass --db PATH"
            )));
        }
        if !path.is_file() {
            return Err(CliError::NotFound(format!(
                "database file {db:?} does not exist (stent never creates one here); \
                 pass --db PATH or a postgres:// URL, or set STENT_DB"
            )));
        }
        Stent::builder(SqliteBackend::open_existing(path).await?)
    };
    let stent = match registry {
        Some(registry) => builder.function_registry(registry).build(),
        None => builder.build(),
    };
    check_tables(&stent, global).await?;
    Ok(stent)
}

/// One indexed lookup, so that a database without stent's tables gets a
/// clear error instead of the driver's "no such table".
async fn check_tables(stent: &Stent, global: &GlobalArgs) -> Result<(), CliError> {
    let probe = ExecutionId::from_uuid(Default::default());
    match stent.backend().execution(probe).await {
        Ok(_) => Ok(()),
        Err(StoreError::Database(message))
            if message.contains("no such table")
                || (message.contains("relation") && message.contains("does not exist")) =>
        {
            let schema = match &global.schema {
                Some(s) => format!(" (schema {s:?})"),
                None => String::new(),
            };
            // On PostgreSQL the tables often live in a schema of their own.
            let hint = if global.db.starts_with("postgres") && global.schema.is_none() {
                "; if your workers use a schema, pass --schema NAME (or set STENT_PG_SCHEMA)"
            } else {
                ""
            };
            Err(CliError::NotFound(format!(
                "{}{schema} holds no stent tables; point --db at the database your \
                 workers use (its tables are created by the backend's init_db()){hint}",
                global.db
            )))
        }
        Err(e) => Err(e.into()),
    }
}
