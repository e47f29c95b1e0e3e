//! `replay`, `resume` and `fork` of the embeddable CLI (`stent_cli::execute`
//! with a registry), on SQLite and PostgreSQL: a clean replay exits 0; a
//! changed workflow (a variant compiled into this test) exits 3 naming the
//! exact seq and field, in human and `--json` output; `--all`; an exported
//! file replays without a database; `fork` moves a failed execution onto
//! fixed code; `resume` re-queues a paused one.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Db, Worker};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use stent::backends::SqliteBackend;
use stent::{
    BoxFuture, Call, DurableFn, DurableOptions, ExecutionId, ExecutionStatus, FunctionRegistry,
    Stent,
};

on_both!(replay_reports_the_changed_seq_and_field);
on_both!(fork_and_resume_repair_executions);

// ------------------------------------------------------------ the code

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: u32,
}

#[stent::durable]
async fn reserve(lines: Vec<Line>) -> Result<u32, String> {
    Ok(lines.iter().map(|l| l.qty).sum())
}

#[stent::durable]
async fn bill(items: u32, cents: u64) -> Result<u64, String> {
    Ok(u64::from(items) * cents)
}

#[stent::durable]
async fn divide(total: u64, by: u64) -> Result<u64, String> {
    total
        .checked_div(by)
        .ok_or_else(|| "division by zero".to_string())
}

#[stent::durable]
async fn email(to: String) -> Result<(), String> {
    let _ = to;
    Ok(())
}

#[stent::durable]
async fn sms(to: String) -> Result<(), String> {
    let _ = to;
    Ok(())
}

macro_rules! workflow {
    ($def:ident, $name:literal, |$($arg:ident : $ty:ty),*| -> $ok:ty $body:block) => {
        struct $def;

        impl DurableFn for $def {
            type Args = ($($ty,)*);
            type Output = $ok;
            type Error = String;
            const NAME: &'static str = $name;

            fn options() -> DurableOptions<Self::Args> {
                DurableOptions::new()
            }

            fn run(args: Self::Args) -> BoxFuture<Result<$ok, String>> {
                let ($($arg,)*) = args;
                Box::pin(async move $body)
            }
        }
    };
}

fn lines() -> Vec<Line> {
    vec![
        Line {
            sku: "a".into(),
            qty: 1,
        },
        Line {
            sku: "b".into(),
            qty: 2,
        },
    ]
}

workflow!(OrderV1, "shop::order", |lines: Vec<Line>| -> u64 {
    let items = reserve(lines).await?;
    bill(items, 250).await
});

workflow!(OrderV2, "shop::order", |lines: Vec<Line>| -> u64 {
    let mut lines = lines;
    lines[1].qty = 5;
    let items = reserve(lines).await?;
    // …and a handling fee on top.
    Ok(bill(items, 300).await? + 100)
});

workflow!(AverageV1, "etl::average", |total: u64| -> u64 {
    let _ = bill(1, total).await?;
    divide(total, 0).await
});

workflow!(AverageFixed, "etl::average", |total: u64| -> u64 {
    let _ = bill(1, total).await?;
    divide(total, 4).await
});

workflow!(NoticeV1, "desk::notice", |to: String| -> String {
    email(to.clone()).await?;
    let ack: String = Stent::wait_for_signal("ack")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{to} {ack}"))
});

workflow!(NoticeBroken, "desk::notice", |to: String| -> String {
    sms(to.clone()).await?;
    let ack: String = Stent::wait_for_signal("ack")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{to} {ack}"))
});

fn with<D: DurableFn>() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register(reserve)
        .register(bill)
        .register(divide)
        .register(email)
        .register(sms)
        .register_def::<D>();
    r
}

async fn executor<D: DurableFn>(db: &Db) -> Stent {
    let builder = match db {
        Db::Sqlite { path, .. } => Stent::builder(SqliteBackend::open(path).await.expect("open")),
        Db::Postgres { backend, .. } => Stent::builder(backend.clone()),
    };
    builder
        .function_registry(with::<D>())
        .poll_min_interval(Duration::from_millis(10))
        .poll_max_interval(Duration::from_millis(100))
        .build()
}

async fn run_to_end<D: DurableFn>(db: &Db, args: D::Args) -> ExecutionId {
    let executor = executor::<D>(db).await;
    let worker = Worker::start(&executor).await;
    let id = executor.dispatch(Call::<D>::new(args)).await.unwrap();
    let _ = executor
        .wait_for::<D::Output, D::Error>(id, Some(Duration::from_secs(30)))
        .await;
    worker.stop().await;
    id
}

/// Runs the embeddable CLI in-process with `registry`: exit code and output.
async fn cli(db: &Db, registry: FunctionRegistry, args: &[&str]) -> (u8, String) {
    let mut all: Vec<String> = vec!["stent".into()];
    all.extend(db.args());
    all.extend(args.iter().map(|a| a.to_string()));
    let parsed = stent_cli::Cli::try_parse_from(&all).expect("arguments parse");
    let mut out = Vec::new();
    let code = stent_cli::execute(parsed, Some(registry), &mut out).await;
    (code, String::from_utf8(out).expect("utf-8 output"))
}

use clap::Parser as _;

// ------------------------------------------------------------ scenarios

async fn replay_reports_the_changed_seq_and_field(db: Db) {
    let id = run_to_end::<OrderV1>(&db, (lines(),)).await;
    let id_text = id.to_string();

    let (code, out) = cli(&db, with::<OrderV1>(), &["replay", &id_text]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replays cleanly"), "{out}");
    assert!(out.contains("shop::order"), "{out}");

    let (code, out) = cli(&db, with::<OrderV2>(), &["replay", &id_text]).await;
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    assert!(out.contains("DIVERGES"), "{out}");
    assert!(out.contains("seq 1"), "{out}");
    assert!(out.contains("args[0][1].qty: 2 -> 5"), "{out}");
    assert!(
        !out.contains("args[1]: 250 -> 300"),
        "stops at the first: {out}"
    );

    let (code, out) = cli(
        &db,
        with::<OrderV2>(),
        &["--json", "replay", &id_text, "--all"],
    )
    .await;
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    let report: Json = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["clean"], false);
    assert_eq!(report["mode"], "all");
    let seqs: Vec<u64> = report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 3, 5], "{out}");
    assert_eq!(
        report["divergences"][0]["diffs"][0]["path"],
        "args[0][1].qty"
    );
    assert_eq!(report["divergences"][0]["diffs"][0]["recorded"], "2");
    assert_eq!(report["divergences"][0]["diffs"][0]["asked"], "5");
    assert_eq!(report["divergences"][1]["diffs"][0]["path"], "args[1]");
    assert_eq!(report["divergences"][2]["reason"]["kind"], "result");
    assert_eq!(
        report["divergences"][0]["recorded"]["function"],
        "replay::reserve"
    );

    // Exported, then replayed from the file alone (no database is opened).
    let file = std::env::temp_dir().join(format!("stent-cli-replay-{}.stent", id.as_uuid()));
    let file_text = file.display().to_string();
    let (code, out) = cli(
        &db,
        with::<OrderV1>(),
        &["journal", &id_text, "--export", &file_text],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let parsed = stent_cli::Cli::try_parse_from([
        "stent",
        "--db",
        "/nonexistent/stent.db",
        "replay",
        "--file",
        &file_text,
    ])
    .unwrap();
    let mut out = Vec::new();
    let code = stent_cli::execute(parsed, Some(with::<OrderV2>()), &mut out).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    assert!(out.contains("args[0][1].qty: 2 -> 5"), "{out}");
    let _ = std::fs::remove_file(&file);

    // Unknown executions and bad files are errors (exit 1), not divergences.
    let (code, _) = cli(
        &db,
        with::<OrderV1>(),
        &["replay", &ExecutionId::new_random().to_string()],
    )
    .await;
    assert_eq!(code, stent_cli::exit::FAILURE);
}

async fn fork_and_resume_repair_executions(db: Db) {
    // fork: a failed execution moves onto the fixed code.
    let id = run_to_end::<AverageV1>(&db, (100,)).await;
    let fixed = executor::<AverageFixed>(&db).await;
    assert_eq!(
        fixed.state_of(id).await.unwrap().state,
        ExecutionStatus::Failed
    );
    let (code, out) = cli(
        &db,
        with::<AverageFixed>(),
        &["--json", "fork", &id.to_string(), "--at", "3"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let answer: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["at"], 3);
    let forked: ExecutionId = answer["forked"].as_str().unwrap().parse().unwrap();
    let worker = Worker::start(&fixed).await;
    let result = fixed
        .wait_for::<u64, String>(forked, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    worker.stop().await;
    assert_eq!(result, Ok(25));
    // The fork says where it came from, and which of its events are copies.
    let (code, out) = cli(
        &db,
        with::<AverageFixed>(),
        &["--json", "show", &forked.to_string()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let shown: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["forked_from"]["execution"], id.to_string(), "{shown}");
    assert_eq!(shown["forked_from"]["at"], 3, "{shown}");
    let (code, out) = cli(&db, with::<AverageFixed>(), &["show", &forked.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("from execution {id} at seq 3")),
        "{out}"
    );
    let (code, out) = cli(
        &db,
        with::<AverageFixed>(),
        &["journal", &forked.to_string()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("forked    from execution {id} at seq 3")),
        "{out}"
    );
    let copies: Vec<&str> = out.lines().filter(|l| l.ends_with("(copied)")).collect();
    assert_eq!(copies.len(), 2, "seqs 1 and 2 are copies:\n{out}");
    let (code, out) = cli(
        &db,
        with::<AverageFixed>(),
        &["fork", &id.to_string(), "--at", "0"],
    )
    .await;
    assert_eq!(code, stent_cli::exit::FAILURE, "{out}");

    // resume: a paused execution runs again once the code is fixed.
    let v1 = executor::<NoticeV1>(&db).await;
    let worker = Worker::start(&v1).await;
    let id = v1
        .dispatch(Call::<NoticeV1>::new(("ada".to_string(),)))
        .await
        .unwrap();
    for _ in 0..2000 {
        let rows = v1
            .backend()
            .read_journal(id.root_invocation(), stent::journal::Seq(0))
            .await
            .unwrap();
        if rows.iter().any(|r| r.kind == "signal_awaited") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let broken = executor::<NoticeBroken>(&db).await;
    let worker = Worker::start(&broken).await;
    broken.send_signal(id, "ack", &"ok").await.unwrap();
    let err = broken
        .wait_for::<String, String>(id, Some(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert!(matches!(err, stent::Error::NonDeterminism { .. }), "{err}");
    worker.stop().await;

    // show: the pause report as the debugger's field diff, in text and JSON.
    let (code, out) = cli(&db, with::<NoticeBroken>(), &["show", &id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("paused") && l.contains("at seq 1")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("diff")
            && l.ends_with("function: replay::email -> replay::sms")),
        "{out}"
    );
    let (code, out) = cli(
        &db,
        with::<NoticeBroken>(),
        &["--json", "show", &id.to_string()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let shown: Json = serde_json::from_str(&out).unwrap();
    let d = &shown["pause"]["divergence"];
    assert_eq!(d["seq"], 1, "{shown}");
    assert_eq!(d["kind"], "mismatch", "{shown}");
    assert_eq!(d["invocation"], id.root_invocation().to_string(), "{shown}");
    assert!(
        d["recorded"].as_str().unwrap().contains("replay::email"),
        "{shown}"
    );
    assert!(
        d["asked"].as_str().unwrap().contains("replay::sms"),
        "{shown}"
    );
    assert_eq!(
        d["diffs"][0],
        serde_json::json!({"path": "function", "recorded": "replay::email", "asked": "replay::sms"}),
        "{shown}"
    );

    // deploy-check: the broken build would pause it (exit 3); the fixed
    // one replays it, so it may be resumed after that deploy.
    let check = ["deploy-check", "--function", "desk::notice"];
    let (code, out) = cli(&db, with::<NoticeBroken>(), &check).await;
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    assert!(out.contains("NOT SAFE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("would pause") && l.contains(&id.to_string())),
        "{out}"
    );
    assert!(out.contains("replay::email"), "{out}");
    let mut json_check = vec!["--json"];
    json_check.extend(check);
    let (code, out) = cli(&db, with::<NoticeBroken>(), &json_check).await;
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    let checked: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(checked["safe"], false, "{checked}");
    assert_eq!(checked["checked"], 1, "{checked}");
    assert_eq!(
        checked["would_pause"][0]["execution"],
        id.to_string(),
        "{checked}"
    );
    assert_eq!(
        checked["would_pause"][0]["divergence"]["seq"], 1,
        "{checked}"
    );
    let (code, out) = cli(&db, with::<NoticeV1>(), &check).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("safe to deploy"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("would resume") && l.contains(&id.to_string())),
        "{out}"
    );
    // A build of another code version still checks executions not pinned.
    let (code, out) = cli(
        &db,
        with::<NoticeV1>(),
        &[
            "--json",
            "deploy-check",
            "--function",
            "desk::notice",
            "--code-version",
            "v9",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let checked: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&checked["checked"], &checked["other_versions"]),
        (&Json::from(1), &Json::from(0)),
        "{checked}"
    );
    // The plain binary has no code to replay against.
    let parsed = stent_cli::Cli::try_parse_from(
        ["stent".to_string()]
            .into_iter()
            .chain(db.args())
            .chain(["deploy-check".to_string()]),
    )
    .unwrap();
    let mut sink = Vec::new();
    assert_eq!(
        stent_cli::execute(parsed, None, &mut sink).await,
        stent_cli::exit::USAGE
    );

    let (code, out) = cli(&db, with::<NoticeBroken>(), &["replay", &id.to_string()]).await;
    assert_eq!(code, stent_cli::exit::DIVERGED, "{out}");
    assert!(
        out.contains("function: replay::email -> replay::sms"),
        "{out}"
    );
    let (code, out) = cli(&db, with::<NoticeV1>(), &["replay", &id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean up to seq"), "{out}");

    let (code, out) = cli(&db, with::<NoticeV1>(), &["resume", &id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resumed execution"), "{out}");
    let fixed = executor::<NoticeV1>(&db).await;
    let worker = Worker::start(&fixed).await;
    let result = fixed
        .wait_for::<String, String>(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    worker.stop().await;
    assert_eq!(result, Ok("ada ok".to_string()));
    let (code, out) = cli(&db, with::<NoticeV1>(), &["resume", &id.to_string()]).await;
    assert_eq!(code, stent_cli::exit::FAILURE, "{out}");
}
