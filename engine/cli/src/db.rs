//! Opening the database named by `--db`, never creating one.

use std::path::Path;

use stent::backends::{PostgresBackend, SqliteBackend};
use stent::journal::store::StoreError;
use stent::notifications::PostgresNotifier;
use stent::{FunctionRegistry, Stent};

use crate::{CliError, GlobalArgs};

/// An executor over the database `--db` names: a `postgres://` (or
/// `postgresql://`) URL, or the path of an existing SQLite file. Its schema
/// is checked first: a database without stent's tables is an error, and
/// one a newer stent wrote is refused to a command that `writes` (others
/// read it with a warning).
pub(crate) async fn open(
    global: &GlobalArgs,
    registry: Option<FunctionRegistry>,
    writes: bool,
) -> Result<Stent, CliError> {
    let db = global.db.as_str();
    let builder = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        // A person waits for the answer: a server that cannot be reached
        // is reported within seconds, not after the pool's 30.
        let mut pg = PostgresBackend::builder(db)
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5));
        if let Some(schema) = &global.schema {
            pg = pg.schema(schema.clone());
        }
        let backend = pg.build().await?;
        check_schema(backend.check_schema().await, global, writes)?;
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
        let backend = SqliteBackend::open_existing(path).await?;
        check_schema(backend.check_schema().await, global, writes)?;
        Stent::builder(backend)
    };
    let stent = match registry {
        Some(registry) => builder.function_registry(registry).build(),
        None => builder.build(),
    };
    Ok(stent)
}

/// What the schema check found, as the command's answer: no stent tables
/// is an error with a hint; a schema a newer stent wrote is refused to a
/// command that writes, and a warning otherwise.
fn check_schema(
    checked: Result<(), StoreError>,
    global: &GlobalArgs,
    writes: bool,
) -> Result<(), CliError> {
    match checked {
        Ok(()) => Ok(()),
        Err(StoreError::SchemaMissing(_)) => {
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
        Err(too_new @ StoreError::SchemaTooNew { .. }) if writes => Err(CliError::Invalid(
            format!("{too_new}; this command would write, so it was refused"),
        )),
        Err(too_new @ StoreError::SchemaTooNew { .. }) => {
            eprintln!(
                "warning: {too_new}; reading it anyway, what this build shows may be incomplete"
            );
            Ok(())
        }
        Err(e) => Err(stent::Error::from(e).into()),
    }
}
