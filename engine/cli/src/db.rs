//! Opening the database named by `--db`, never creating one.

use std::path::Path;

use stent::backends::{PostgresBackend, SqliteBackend};
use stent::{FunctionRegistry, Stent};

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
        Stent::builder(pg.build().await?)
    } else {
        let path = Path::new(db);
        if !path.is_file() {
            return Err(CliError::NotFound(format!(
                "database file {db:?} does not exist (stent never creates one here); \
                 pass --db PATH or a postgres:// URL, or set STENT_DB"
            )));
        }
        Stent::builder(SqliteBackend::open_existing(path).await?)
    };
    Ok(match registry {
        Some(registry) => builder.function_registry(registry).build(),
        None => builder.build(),
    })
}
