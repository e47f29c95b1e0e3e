//! What the benchmark examples share: their `--name value` flags (read
//! without a parser; they take a handful of numbers and URLs) and the
//! database they fill, a SQLite file or a PostgreSQL schema of their own.

use std::path::Path;

use stent::Stent;

/// The value after `name`, if given.
pub fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The number after `name`, or `default` when it is missing or not a number.
pub fn arg(name: &str, default: u64) -> u64 {
    text_arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An executor over the schema `schema` at `pg` (when given) or the SQLite
/// file `sqlite`, with stent's tables created.
pub async fn open(pg: Option<&str>, schema: &str, sqlite: &Path) -> Result<Stent, stent::Error> {
    Ok(match pg {
        Some(url) => {
            let backend = stent::backends::PostgresBackend::builder(url)
                .schema(schema)
                .build()
                .await?;
            backend.init_db().await?;
            Stent::new(backend)
        }
        None => {
            let backend = stent::backends::SqliteBackend::open(sqlite).await?;
            backend.init_db().await?;
            Stent::new(backend)
        }
    })
}
