//! Server time of the web console's pages on a large SQLite database:
//! 100,000 executions (list, filtered list, id prefix, stats) and one
//! execution with a 10,000-event journal (its page). Each page is rendered
//! through the router, without sockets, `--rounds` times; p50 and p99 are
//! printed, then the query plans of the list's statements.
//!
//! ```text
//! cargo run --release -p stent-cli --example ui_bench -- [--executions 100000] [--events 10000] [--rounds 50] [--pg URL] [--connections N] [--keep]
//! ```
//!
//! With `--pg URL` it runs on PostgreSQL, in a schema of its own (dropped at
//! the end, unless `--keep`), and prints PostgreSQL's plans.

use std::time::Duration;

use tokio::time::Instant;

#[path = "support/bench.rs"]
mod bench;
use bench::{arg, text_arg};

use axum::body::Body;
use axum::http::Request;
use stent::Stent;
use stent::backends::SqliteBackend;
use tower::ServiceExt;

#[stent::durable]
async fn order(n: u64) -> Result<u64, String> {
    Ok(n)
}

#[stent::durable]
async fn step(i: u32) -> Result<u32, String> {
    Ok(i)
}

/// Writes `writes` counter increments and makes `calls` calls: a journal of
/// about `writes + 2 * calls` events in the root.
#[stent::durable]
async fn long_journal(writes: u32, calls: u32) -> Result<u32, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    for _ in 0..writes {
        ctx.counters("n").add(1).map_err(|e| e.to_string())?;
    }
    let mut sum = 0;
    for i in 0..calls {
        sum += step(i).await?;
    }
    Ok(sum)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn time_page(app: &axum::Router, uri: &str, rounds: u64) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{uri}: {}",
            response.status()
        );
        let body = axum::body::to_bytes(response.into_body(), 256 << 20)
            .await
            .unwrap();
        times.push(start.elapsed());
        size = body.len();
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), size)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let executions = arg("--executions", 100_000);
    let events = arg("--events", 10_000) as u32;
    let rounds = arg("--rounds", 50);
    let pg = text_arg("--pg");
    let dir = std::env::temp_dir().join(format!("stent-ui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let schema = format!("stent_ui_bench_{}", std::process::id());
    let executor = bench::open(pg.as_deref(), &schema, &path).await?;

    // The long journal first (counter writes and calls, run to its end);
    // then the orders, which stay pending.
    let calls = (events / 10).max(1);
    let writes = events.saturating_sub(2 * calls);
    let long = executor.dispatch(long_journal(writes, calls)).await?;
    let worker = tokio::spawn(executor.worker().serve());
    executor
        .wait_for::<u32, String>(long, Some(Duration::from_secs(600)))
        .await??;
    worker.abort();
    let rows = executor
        .backend()
        .read_execution_journal(long, None)
        .await?;
    let journal_events: usize = rows.iter().map(|(_, r)| r.len()).sum();
    eprintln!(
        "long execution: {journal_events} events in {} invocations",
        rows.len()
    );

    let start = Instant::now();
    let mut pending = Vec::new();
    for n in 0..executions {
        let tag = if n % 100 == 0 { "vip" } else { "std" };
        pending.push(executor.dispatch(order(n)).tags([tag]).into_future());
        if pending.len() == 500 {
            futures_util::future::try_join_all(pending.drain(..)).await?;
        }
    }
    futures_util::future::try_join_all(pending.drain(..)).await?;
    eprintln!(
        "dispatched {executions} executions in {:?}",
        start.elapsed()
    );

    // PostgreSQL plans with the tables' statistics: gather them now, as
    // autovacuum would soon after a bulk load.
    if let Some(url) = &pg {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{schema}\"; ANALYZE"
        )))
        .execute(&mut conn)
        .await?;
    }
    // The console runs on an executor of its own, with a fresh pool, as
    // `stent ui` does in its own process.
    let executor = match &pg {
        Some(url) => Stent::new(
            stent::backends::PostgresBackend::builder(url)
                .schema(&schema)
                .max_connections(
                    text_arg("--connections")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(10),
                )
                .build()
                .await?,
        ),
        None => Stent::new(SqliteBackend::open(&path).await?),
    };
    let app = stent_cli::ui::router(executor.clone(), stent_cli::ui::UiConfig::read_only());
    let some_id = executor.list_executions(1, 5_000, None).await?[0].id;
    let prefix = &some_id.to_string()[..6];
    let pages = [
        ("list, first page".to_string(), "/".to_string()),
        (
            "list, page 100 (offset 4,950)".into(),
            "/?offset=4950".into(),
        ),
        ("list, pending".into(), "/?state=pending".into()),
        (
            "list, by function".into(),
            "/?function=ui_bench::order".into(),
        ),
        ("list, by tag (1 in 100)".into(), "/?tag=vip".into()),
        ("list, by id prefix".into(), format!("/?id={prefix}")),
        (
            "list, by time window".into(),
            "/?from=2000-01-01T00:00&to=2000-01-02T00:00".into(),
        ),
        ("stats".into(), "/stats".into()),
        (
            format!("execution, {journal_events} events"),
            format!("/executions/{long}"),
        ),
        (
            "execution, 1 event".into(),
            format!("/executions/{some_id}"),
        ),
    ];
    println!("| page | p50 | p99 | bytes |");
    println!("|---|---|---|---|");
    for (name, uri) in &pages {
        let (p50, p99, size) = time_page(&app, uri, rounds).await;
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {size} |",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }

    // The query plans behind the list's filters.
    let statements = [
        ("newest first", "SELECT id FROM executions ORDER BY created_at DESC, id ASC LIMIT 51".to_string()),
        ("by status", "SELECT id FROM executions WHERE status = 'pending' ORDER BY created_at DESC, id ASC LIMIT 51".into()),
        ("by function", "SELECT id FROM executions WHERE function = 'x' ORDER BY created_at DESC, id ASC LIMIT 51".into()),
        ("by queue", "SELECT id FROM executions WHERE queue = 'x' ORDER BY created_at DESC, id ASC LIMIT 51".into()),
        ("by time", "SELECT id FROM executions WHERE created_at >= 1 AND created_at < 2 ORDER BY created_at DESC, id ASC LIMIT 51".into()),
    ];
    use sqlx::Connection;
    match &pg {
        None => {
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
            let more = [
                ("by id prefix", "SELECT id FROM executions WHERE id BETWEEN 'a' AND 'b' ORDER BY created_at DESC, id ASC LIMIT 51".to_string()),
            ];
            for (name, statement) in statements.iter().chain(more.iter()) {
                let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(
                    format!("EXPLAIN QUERY PLAN {statement}"),
                ))
                .fetch_all(&mut conn)
                .await?;
                let plan: Vec<String> = rows.into_iter().map(|r| r.3).collect();
                println!("plan {name}: {}", plan.join("; "));
            }
        }
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET search_path TO \"{schema}\"; ANALYZE"
            )))
            .execute(&mut conn)
            .await?;
            let more = [
                ("by tag", "SELECT id FROM executions WHERE tags @> ARRAY['vip'] ORDER BY created_at DESC, id ASC LIMIT 51".to_string()),
                ("by id prefix", "SELECT id FROM executions WHERE id BETWEEN '3f000000-0000-0000-0000-000000000000'::uuid AND '3fffffff-ffff-ffff-ffff-ffffffffffff'::uuid ORDER BY created_at DESC, id ASC LIMIT 51".to_string()),
            ];
            for (name, statement) in statements.iter().chain(more.iter()) {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN (COSTS OFF) {statement}"
                )))
                .fetch_all(&mut conn)
                .await?;
                let plan: Vec<String> = rows.iter().map(|r| r.trim().to_string()).collect();
                println!("plan {name}: {}", plan.join("; "));
            }
            if std::env::args().any(|a| a == "--keep") {
                println!("kept schema {schema}");
            } else {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await?;
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
