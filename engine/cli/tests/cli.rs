//! The real `stent` binary against databases these tests create and fill
//! with the stent library: human and `--json` output, exit codes. Every
//! scenario runs on SQLite and on PostgreSQL (in a schema of its own;
//! skipped without a server unless `STENT_REQUIRE_SERVICES=1`).

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Db, Filled, Worker, awaits_approval, calls_hopeless, fill, patched_approval, run_stent,
};
use serde_json::json;
use stent::journal::export::JournalExport;
use stent::{ExecutionId, Stent};

on_both!(list_and_show);
on_both!(journal_timeline_json_and_export);
on_both!(tasks_and_stats);
on_both!(dead_letters);
on_both!(signal_cancel_and_cleanup);
on_both!(watch_frames);
on_both!(what_executions_wait_for);
on_both!(a_signal_typo_pauses_and_the_plain_binary_resumes);
on_both!(code_versions_in_list_show_and_stats);
on_both!(a_patch_marker_in_the_timeline_json_and_export);

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

async fn list_and_show(db: Db) {
    let executor = db.executor().await;
    let Filled {
        done,
        failed,
        waiting,
        dead,
    } = fill(&executor).await;

    let out = db.stent(&["list"]);
    out.ok();
    for id in [done, failed, waiting, dead[0].0, dead[1].0] {
        assert!(out.stdout.contains(&id.to_string()), "{}", out.stdout);
    }
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(out.stdout.contains("completed") && out.stdout.contains("failed"));
    assert!(
        !out.stdout.contains('\x1b'),
        "no colors when not a terminal"
    );

    let all = db.json(&["list"]);
    assert_eq!(all.as_array().unwrap().len(), 5);
    assert_eq!(
        ids(&db.json(&["list", "--state", "completed"])),
        vec![done.to_string()]
    );
    assert_eq!(
        ids(&db.json(&["list", "--state", "failed"])),
        vec![failed.to_string()]
    );
    let paged: Vec<String> = [0, 2, 4]
        .iter()
        .flat_map(|o| ids(&db.json(&["list", "--limit", "2", "--offset", &o.to_string()])))
        .collect();
    assert_eq!(paged, ids(&all));
    let bad = db.stent(&["list", "--state", "sleeping"]);
    bad.code(1);
    assert!(
        bad.stderr.contains("unknown execution state"),
        "{}",
        bad.stderr
    );
    db.stent(&["list", "--limit", "many"]).code(2);

    // A completed execution: routing, counters, custom state, calls, result.
    let shown = db.stent(&["show", &done.to_string()]);
    shown.ok();
    for needle in [
        "completed",
        "cli::common::checkout",
        "shop, eu",
        "priority 5",
        "items = 3",
        "phase = \"charged\"",
        "receipt-7-4200",
        "cli::common::charge",
        "1/1 call done",
    ] {
        assert!(
            shown.stdout.contains(needle),
            "{needle:?} in\n{}",
            shown.stdout
        );
    }
    let v = db.json(&["show", &done.to_string()]);
    assert_eq!(v["state"], "completed");
    assert_eq!(v["priority"], 5);
    assert_eq!(v["tags"], json!(["shop", "eu"]));
    assert_eq!(v["counters"]["items"], 3.0);
    assert_eq!(v["custom_state"]["phase"], "charged");
    assert_eq!(
        v["result"]["ok"],
        json!({"order": 7, "receipt": "receipt-7-4200", "total": 42.5})
    );
    assert_eq!(v["calls"][0]["function"], "cli::common::charge");
    assert_eq!(v["calls"][0]["state"], "completed");

    // A typed error, decoded without the user's types.
    let v = db.json(&["show", &failed.to_string()]);
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["result"]["error"],
        json!({"kind": "error", "error": {"OutOfStock": {"sku": "A-8"}}})
    );
    let shown = db.stent(&["show", &failed.to_string()]);
    assert!(
        shown.stdout.contains(r#"{"OutOfStock":{"sku":"A-8"}}"#),
        "{}",
        shown.stdout
    );

    // Not found and invalid ids: exit code 1 with a message.
    let ghost = ExecutionId::new_random().to_string();
    let out = db.stent(&["show", &ghost]);
    out.code(1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    let out = db.stent(&["show", "order-7"]);
    out.code(1);
    assert!(out.stderr.contains("not an execution id"), "{}", out.stderr);
}

/// Executions pinned to code versions: `list` grows a VERSION column,
/// `show` a version line, `stats` counts the unfinished per version; JSON
/// carries `code_version`.
async fn code_versions_in_list_show_and_stats(db: Db) {
    let old = db.executor_of_version(Some("2026-11-20")).await;
    let new = db.executor_of_version(Some("2026-12-05")).await;
    let plain = db.executor().await;
    let a = old.dispatch(awaits_approval("a".into())).await.unwrap();
    let b = new.dispatch(awaits_approval("b".into())).await.unwrap();
    new.dispatch(awaits_approval("c".into())).await.unwrap();
    let unpinned = plain.dispatch(awaits_approval("d".into())).await.unwrap();

    let out = db.stent(&["list"]);
    out.ok();
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(out.stdout.lines().next().unwrap().contains("VERSION"));
    for (id, version) in [(a, "2026-11-20"), (b, "2026-12-05"), (unpinned, "-")] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&id.to_string()) && l.contains(&format!(" {version} "))),
            "{id} {version} in\n{}",
            out.stdout
        );
    }
    let shown = db.stent(&["show", &a.to_string()]);
    shown.ok();
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("version") && l.ends_with("2026-11-20")),
        "{}",
        shown.stdout
    );
    let v = db.json(&["show", &b.to_string()]);
    assert_eq!(v["code_version"], "2026-12-05");
    let v = db.json(&["show", &unpinned.to_string()]);
    assert_eq!(v["code_version"], serde_json::Value::Null);

    let stats = db.stent(&["stats"]);
    stats.ok();
    let line = stats
        .stdout
        .lines()
        .find(|l| l.starts_with("versions"))
        .unwrap_or_else(|| panic!("a versions line in\n{}", stats.stdout));
    assert!(
        line.contains("(not pinned): 1 unfinished")
            && line.contains("2026-11-20: 1 unfinished")
            && line.contains("2026-12-05: 2 unfinished"),
        "{line}"
    );
    let v = db.json(&["stats"]);
    assert_eq!(
        v["versions"],
        json!([
            {"code_version": null, "unfinished": 1},
            {"code_version": "2026-11-20", "unfinished": 1},
            {"code_version": "2026-12-05", "unfinished": 2},
        ])
    );
}

/// A patch's marker shows in the timeline, in JSON and in an export.
async fn a_patch_marker_in_the_timeline_json_and_export(db: Db) {
    let executor = db.executor().await;
    let worker = Worker::start(&executor).await;
    let id = executor
        .dispatch(patched_approval("memo".into()))
        .await
        .unwrap();
    for _ in 0..2_000 {
        if !executor.state_of(id).await.unwrap().waits.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let id_text = id.to_string();

    let out = db.stent(&["journal", &id_text]);
    out.ok();
    assert!(
        out.stdout.lines().any(|l| l.starts_with("  1  ")
            && l.contains("patch_marker")
            && l.contains("new branch of patch \"fast-lane\"")),
        "{}",
        out.stdout
    );
    let v = db.json(&["journal", &id_text]);
    let events = v["invocations"][0]["events"].as_array().unwrap();
    assert_eq!(events[1]["kind"], "patch_marker", "{v}");
    assert_eq!(events[1]["event"], json!({"patch": "fast-lane"}), "{v}");

    let file = std::env::temp_dir().join(format!("stent-export-{id}.cbor"));
    db.stent(&["journal", &id_text, "--export", file.to_str().unwrap()])
        .ok();
    let export = JournalExport::from_bytes(&std::fs::read(&file).unwrap()).unwrap();
    let events = export.root().unwrap().events().unwrap();
    assert_eq!(
        events[1],
        stent::journal::Event::PatchMarker {
            patch: "fast-lane".into()
        }
    );
    let _ = std::fs::remove_file(&file);
}

async fn journal_timeline_json_and_export(db: Db) {
    let executor = db.executor().await;
    let filled = fill(&executor).await;
    let id = filled.done.to_string();

    let out = db.stent(&["journal", &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let find = |pred: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("no such line in\n{}", out.stdout))
    };
    let started = find(&|l| {
        l.starts_with("  0  ") && l.contains("started") && l.contains("cli::common::checkout")
    });
    let scheduled = find(&|l| {
        l.contains("call_scheduled") && l.contains("cli::common::charge") && l.contains("[7,4200]")
    });
    // The child's journal is indented under the call that made it.
    let child_started = find(&|l| {
        l.starts_with("      0  ") && l.contains("started") && l.contains("cli::common::charge")
    });
    let child_done = find(&|l| {
        l.starts_with("    ") && l.contains("completed") && l.contains("\"receipt-7-4200\"")
    });
    let resolved =
        find(&|l| l.contains("call_completed") && l.contains("cli::common::charge (seq"));
    let finished = find(&|l| {
        l.starts_with("  ")
            && !l.starts_with("    ")
            && l.contains(" completed ")
            && l.contains("\"total\":42.5")
    });
    assert!(started < scheduled && scheduled < child_started && child_started < child_done);
    assert!(
        child_done < resolved && resolved < finished,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("counter items += 3"), "{}", out.stdout);
    assert!(
        out.stdout.contains("state phase = \"charged\""),
        "{}",
        out.stdout
    );

    // Long values are cut.
    let narrow = db.stent(&["journal", &id, "--width", "10"]);
    assert!(narrow.stdout.contains('…'), "{}", narrow.stdout);

    let v = db.json(&["journal", &id]);
    assert_eq!(v["state"], "completed");
    let invocations = v["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 2);
    assert_eq!(invocations[0]["depth"], 0);
    assert_eq!(invocations[1]["depth"], 1);
    assert_eq!(
        invocations[1]["parent"]["invocation"],
        invocations[0]["invocation"]
    );
    let root_events = invocations[0]["events"].as_array().unwrap();
    assert_eq!(root_events[0]["kind"], "started");
    assert_eq!(root_events[0]["event"]["args"], json!([7]));
    assert_eq!(root_events.last().unwrap()["kind"], "completed");
    let call = root_events
        .iter()
        .find(|e| e["kind"] == "call_scheduled")
        .unwrap();
    assert_eq!(call["event"]["child"], invocations[1]["invocation"]);
    assert_eq!(call["event"]["call_key"].as_str().unwrap().len(), 64);

    // Export: a file the journal crate reads back.
    let file = std::env::temp_dir().join(format!("stent-export-{id}.cbor"));
    let out = db.stent(&["journal", &id, "--export", file.to_str().unwrap()]);
    out.ok();
    assert!(out.stdout.contains("exported"), "{}", out.stdout);
    let export = JournalExport::from_bytes(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(export.execution, filled.done);
    assert_eq!(export.function, "cli::common::checkout");
    assert_eq!(export.invocations.len(), 2);
    assert_eq!(
        export.root().unwrap().events().unwrap().len(),
        root_events.len()
    );
    let _ = std::fs::remove_file(&file);

    db.stent(&["journal", &ExecutionId::new_random().to_string()])
        .code(1);
}

async fn tasks_and_stats(db: Db) {
    let executor = db.executor().await;
    let filled = fill(&executor).await;

    let tasks = db.json(&["tasks", "list", "--execution", &filled.done.to_string()]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["id"], filled.done.root_invocation().to_string());
    assert!(tasks.iter().all(|t| t["state"] == "done"));
    assert_eq!(tasks[1]["function"], "cli::common::charge");

    let dead = db.json(&["tasks", "list", "--state", "dead"]);
    let mut dead_ids = ids(&dead);
    dead_ids.sort();
    let mut expected: Vec<String> = filled.dead.iter().map(|(_, t)| t.to_string()).collect();
    expected.sort();
    assert_eq!(dead_ids, expected);
    assert_eq!(
        db.json(&["tasks", "list", "--limit", "3"])
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let out = db.stent(&["tasks", "show", &filled.dead[0].1.to_string()]);
    out.ok();
    assert!(
        out.stdout.contains("dead") && out.stdout.contains("cli::common::hopeless"),
        "{}",
        out.stdout
    );
    let one = db.json(&[
        "tasks",
        "show",
        &filled.waiting.root_invocation().to_string(),
    ]);
    assert_eq!(one["execution"], filled.waiting.to_string());
    assert_eq!(one["state"], "waiting");
    db.stent(&["tasks", "show", &ExecutionId::new_random().to_string()])
        .code(1);
    db.stent(&["tasks", "list", "--state", "asleep"]).code(1);

    let s = db.json(&["stats"]);
    assert_eq!(s["executions"]["completed"], 1);
    assert_eq!(s["executions"]["failed"], 1);
    assert_eq!(s["executions"]["running"], 3);
    assert_eq!(s["tasks"]["dead"], 2);
    assert_eq!(s["tasks"]["waiting"], 3);
    assert_eq!(s["dead_letters"], 2);
    assert_eq!(
        s["queues"],
        json!([{"queue": "default", "ready": 0, "due": 0, "leased": 0, "waiting": 3}])
    );
    assert_eq!(s["running"], json!([]));
    let out = db.stent(&["stats"]);
    out.ok();
    for needle in [
        "executions",
        "completed 1",
        "dead letters 2",
        "QUEUE",
        "default",
        "running: nothing",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in\n{}", out.stdout);
    }
}

async fn dead_letters(db: Db) {
    let executor = db.executor().await;
    let filled = fill(&executor).await;
    let [(exec_a, task_a), (exec_b, task_b)] = filled.dead;

    let letters = db.json(&["dlq", "list"]);
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 2);
    for l in letters {
        assert_eq!(l["function"], "cli::common::hopeless");
        assert!(l["reason"].as_str().unwrap().contains("hopeless"), "{l}");
    }
    let out = db.stent(&["dlq", "list"]);
    assert!(out.stdout.contains(&task_a.to_string()), "{}", out.stdout);
    let out = db.stent(&["dlq", "show", &task_a.to_string()]);
    out.ok();
    assert!(out.stdout.contains("hopeless 1"), "{}", out.stdout);
    assert_eq!(
        db.json(&["dlq", "show", &task_b.to_string()])["execution"],
        exec_b.to_string()
    );

    // Discarding asks for --force when nobody can confirm.
    let out = db.stent(&["dlq", "discard", &task_b.to_string()]);
    out.code(1);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    let out = db.stent(&["dlq", "discard", &task_b.to_string(), "--force"]);
    out.ok();
    assert!(out.stdout.contains("discarded"), "{}", out.stdout);
    // The caller fails with the discarded call's failure.
    let worker = Worker::start(&executor).await;
    let err = executor
        .wait_for::<u64, String>(exec_b, Some(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dead letter discarded"), "{err}");
    worker.stop().await;
    let shown = db.json(&["show", &exec_b.to_string()]);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert_eq!(shown["result"]["error"]["kind"], "aborted", "{shown}");

    // Replaying makes the task runnable again, in another queue if asked.
    let v = db.json(&["dlq", "replay", &task_a.to_string(), "--queue", "repair"]);
    assert_eq!(v["replayed"], json!([task_a.to_string()]));
    let task = db.json(&["tasks", "show", &task_a.to_string()]);
    assert_eq!(task["state"], "ready");
    assert_eq!(task["queue"], "repair");
    assert_eq!(db.json(&["dlq", "list"]), json!([]));
    db.stent(&["dlq", "replay", &task_a.to_string()]).code(1);
    db.stent(&["dlq", "show", &task_a.to_string()]).code(1);
    let out = db.stent(&["dlq", "replay-all"]);
    out.ok();
    assert!(out.stdout.contains("replayed 0"), "{}", out.stdout);
    let _ = exec_a;
}

async fn signal_cancel_and_cleanup(db: Db) {
    let executor = db.executor().await;
    let filled = fill(&executor).await;
    let waiting = filled.waiting.to_string();

    // Signals: a bad JSON payload and an unknown execution are refused.
    let out = db.stent(&["signal", &waiting, "approval", "{oops", "--json-payload"]);
    out.code(1);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    let out = db.stent(&[
        "signal",
        &ExecutionId::new_random().to_string(),
        "approval",
        "x",
    ]);
    out.code(1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    // Sent from this separate process, consumed by a worker here; run
    // twice under a key (its first run's outcome unknown), stored once.
    for _ in 0..2 {
        let out = db.stent(&["signal", &waiting, "approval", "alice", "--key", "m-1"]);
        out.ok();
        assert!(
            out.stdout.contains("sent signal \"approval\""),
            "{}",
            out.stdout
        );
    }
    let pending = executor
        .backend()
        .pending_signals(filled.waiting, &[])
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let worker = Worker::start(&executor).await;
    let got = executor
        .wait_for::<String, String>(filled.waiting, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(got, Ok("doc-1 approved by alice".to_string()));
    worker.stop().await;
    // The keyed command once more: it was delivered, so it succeeds.
    db.stent(&["signal", &waiting, "approval", "alice", "--key", "m-1"])
        .ok();
    // Once it has ended, a signal is refused: it would never be delivered.
    let out = db.stent(&["signal", &waiting, "approval", "bob"]);
    out.code(1);
    assert!(
        out.stderr.contains("has already ended (completed)") && out.stderr.contains("refused"),
        "{}",
        out.stderr
    );

    // Cancel: once, then it had already ended.
    let second = executor
        .dispatch(awaits_approval("doc-2".into()))
        .await
        .unwrap();
    let v = db.json(&[
        "cancel",
        &second.to_string(),
        "--reason",
        "duplicate of doc-1",
    ]);
    assert_eq!(v["cancelled"], true);
    assert_eq!(v["state"], "cancelled");
    // Why it ended is recorded: in show, its JSON and the journal.
    let shown = db.json(&["show", &second.to_string()]);
    assert_eq!(
        shown["interruption"],
        serde_json::json!({"kind": "cancelled", "reason": "duplicate of doc-1"}),
        "{shown}"
    );
    let out = db.stent(&["show", &second.to_string()]);
    assert!(
        out.stdout.contains("cancelled: duplicate of doc-1"),
        "{}",
        out.stdout
    );
    let journal = db.json(&["journal", &second.to_string()]);
    let last = journal["invocations"][0]["events"]
        .as_array()
        .and_then(|e| e.last().cloned())
        .unwrap();
    assert_eq!(last["kind"], "cancelled", "{journal}");
    assert_eq!(last["event"]["reason"], "duplicate of doc-1", "{journal}");
    let out = db.stent(&["journal", &second.to_string()]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("cancelled") && l.contains("reason: duplicate of doc-1")),
        "{}",
        out.stdout
    );
    let out = db.stent(&["cancel", &second.to_string()]);
    out.ok();
    assert!(out.stdout.contains("already ended"), "{}", out.stdout);
    db.stent(&["cancel", &ExecutionId::new_random().to_string()])
        .code(1);

    // Cleanup: a dry run counts, the real one deletes the ended executions
    // (completed, failed, approved, cancelled), not the running ones.
    let before = db
        .json(&["list", "--limit", "100"])
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, 6);
    let dry = db.json(&["cleanup", "--days", "0", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["executions"], 4, "{dry}");
    assert!(dry["events"].as_u64().unwrap() > 4, "{dry}");
    assert_eq!(
        db.json(&["list", "--limit", "100"])
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // --days 0 wipes every ended execution: it wants --force.
    let out = db.stent(&["cleanup", "--days", "0"]);
    out.code(1);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    let out = db.stent(&["cleanup", "--days", "0", "--force"]);
    out.ok();
    assert!(
        out.stdout.contains("deleted 4 execution(s)"),
        "{}",
        out.stdout
    );
    let mut left = ids(&db.json(&["list"]));
    left.sort();
    let mut running: Vec<String> = filled.dead.iter().map(|(e, _)| e.to_string()).collect();
    running.sort();
    assert_eq!(left, running);
    let out = db.stent(&["cleanup", "--dry-run"]);
    assert!(
        out.stdout.contains("would delete 0 execution(s)"),
        "{}",
        out.stdout
    );
}

async fn watch_frames(db: Db) {
    let executor = db.executor().await;
    let filled = fill(&executor).await;
    let out = db.stent(&["watch", "--iterations", "2", "--interval", "10ms"]);
    out.ok();
    assert_eq!(
        out.stdout.matches("stent watch").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("frame 2"), "{}", out.stdout);
    assert!(out.stdout.contains("every 10ms"), "{}", out.stdout);
    // The waiting execution, by its short id, says what it waits for, in
    // lines that fit 80 columns.
    let waiting_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&filled.waiting.to_string()[..8]))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        waiting_line.contains("waiting: signal \"approval\""),
        "{waiting_line}"
    );
    assert!(
        out.stdout
            .lines()
            .all(|l| stent_cli::render::visible_len(l) <= 80),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("dead letters 2"), "{}", out.stdout);
    assert!(out.stdout.contains("executions/s"), "{}", out.stdout);

    let out = db.stent(&["--json", "watch", "--iterations", "3", "--interval", "10ms"]);
    out.ok();
    let frames: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per frame"))
        .collect();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2]["frame"], 3);
    assert_eq!(frames[0]["throughput_per_sec"], serde_json::Value::Null);
    assert!(frames[1]["throughput_per_sec"].is_number());
    assert_eq!(frames[0]["active"].as_array().unwrap().len(), 3);
    assert_eq!(frames[0]["dead_letters"], 2);

    db.stent(&["watch", "--interval", "0s", "--iterations", "1"])
        .code(2);
}

#[test]
fn a_missing_database_file_is_an_error_and_is_not_created() {
    let path = std::env::temp_dir().join(format!(
        "stent-cli-missing-{}/nothing.db",
        std::process::id()
    ));
    let out = run_stent(&["--db".into(), path.display().to_string(), "list".into()]);
    out.code(1);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[test]
fn the_plain_binary_explains_how_to_get_replay() {
    let id = "0192f0c4-5b7a-7cc1-9a0e-3f1d2c4b5a69";
    for args in [vec!["replay", id, "--all"], vec!["fork", id, "--at", "3"]] {
        let command = args[0];
        let out = run_stent(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        out.code(2);
        assert!(
            out.stderr.contains("stent_cli::run(Some(registry))"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(command), "{}", out.stderr);
    }
}

#[test]
fn usage_errors_exit_with_2_and_help_with_0() {
    run_stent(&["frobnicate".into()]).code(2);
    run_stent(&["show".into()]).code(2);
    let help = run_stent(&["--help".into()]);
    help.code(0);
    for command in [
        "list", "show", "journal", "tasks", "stats", "dlq", "signal", "cancel", "cleanup", "watch",
        "replay",
    ] {
        assert!(
            help.stdout.contains(command),
            "{command} in\n{}",
            help.stdout
        );
    }
}

#[test]
fn a_database_without_stent_tables_or_a_directory_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("stent-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = run_stent(&["--db".into(), empty.display().to_string(), "list".into()]);
    out.code(1);
    assert!(
        out.stderr.contains("holds no stent tables"),
        "{}",
        out.stderr
    );
    let out = run_stent(&["--db".into(), dir.display().to_string(), "stats".into()]);
    out.code(1);
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_without_stent_tables_is_a_clear_error() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Db::Postgres { url, .. } = &db else {
        unreachable!("Db::postgres gives a PostgreSQL database")
    };
    let out = run_stent(&[
        "--db".into(),
        url.clone(),
        "--schema".into(),
        "stent_cli_no_such_schema".into(),
        "list".into(),
    ]);
    out.code(1);
    assert!(
        out.stderr.contains("holds no stent tables"),
        "{}",
        out.stderr
    );
}

/// On PostgreSQL, `stent signal` wakes a worker of another process at once:
/// the binary publishes through `LISTEN`/`NOTIFY` and waits until the
/// message is out before it exits. The worker here polls once an hour, so
/// only that notification can get the execution going again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_from_the_binary_wakes_a_listening_worker_at_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let common::Db::Postgres { backend, .. } = &db else {
        unreachable!("Db::postgres gives a PostgreSQL database")
    };
    let hour = Duration::from_secs(3600);
    let executor = stent::Stent::builder(backend.clone())
        .notification_backend(stent::notifications::PostgresNotifier::new(backend))
        .poll_min_interval(hour)
        .poll_max_interval(hour)
        .build();
    let lifecycle = executor.create_worker_lifecycle(None);
    let worker = tokio::spawn(
        executor
            .worker()
            .lifecycle(lifecycle.clone())
            .poll_min_interval(hour)
            .poll_max_interval(hour)
            .serve(),
    );
    lifecycle.wait_until_ready().await;
    let id = executor
        .dispatch(awaits_approval("memo".into()))
        .await
        .unwrap();
    // Parked, waiting for its signal.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while executor.state_of(id).await.unwrap().state != stent::ExecutionStatus::Running
        || executor
            .list_tasks(
                stent::records::TaskFilter::default()
                    .execution(id)
                    .state(stent::records::TaskState::Waiting)
                    .limit(10),
            )
            .await
            .unwrap()
            .is_empty()
    {
        assert!(tokio::time::Instant::now() < give_up, "never parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let id_text = id.to_string();
    let out = tokio::task::spawn_blocking({
        let args = db.args();
        move || {
            let mut all = args;
            all.extend(["signal".into(), id_text, "approval".into(), "ada".into()]);
            run_stent(&all)
        }
    })
    .await
    .unwrap();
    out.ok();
    let result = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(20)))
        .await
        .expect("woken by the binary's notification, not by a poll");
    assert_eq!(result, Ok("memo approved by ada".to_string()));
    lifecycle.request_drain();
    worker.await.unwrap().unwrap();
}

/// Marks `db` as written by a newer stent: a migration version 99 that
/// this build does not know.
async fn record_a_newer_schema(db: &Db) {
    use sqlx::Connection;
    let insert = "INSERT INTO _sqlx_migrations \
        (version, description, success, checksum, execution_time) \
        VALUES (99, 'from the future', TRUE, X'00', 0)";
    match db {
        Db::Sqlite { path, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the file");
            sqlx::query(insert)
                .execute(&mut conn)
                .await
                .expect("record migration 99");
        }
        Db::Postgres {
            backend, schema, ..
        } => {
            let insert = insert
                .replace(
                    "_sqlx_migrations",
                    &format!("\"{schema}\"._sqlx_migrations"),
                )
                .replace("X'00'", "'\\x00'::bytea");
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .execute(backend.pool())
                .await
                .expect("record migration 99");
        }
    }
}

/// On a database a newer stent wrote, commands that read warn and go on,
/// commands that write are refused naming both versions (exit 1), and the
/// backend's `init_db` refuses to touch it.
async fn a_newer_schema_is_read_with_a_warning_and_never_written(db: Db) {
    let executor = db.executor().await;
    let id = executor
        .dispatch(awaits_approval("doc".into()))
        .await
        .unwrap();
    record_a_newer_schema(&db).await;
    let with = |rest: &[&str]| {
        let mut args = db.args();
        args.extend(rest.iter().map(|s| s.to_string()));
        run_stent(&args)
    };
    let listed = with(&["list"]);
    listed.code(0);
    assert!(
        listed
            .stderr
            .contains("created by a newer stent (schema version 99")
            && listed.stdout.contains(&id.to_string()),
        "{}\n{}",
        listed.stderr,
        listed.stdout
    );
    for write in [
        vec!["cancel", &id.to_string()],
        vec!["signal", &id.to_string(), "approval", "true"],
        vec!["cleanup", "--days", "0", "--force"],
    ] {
        let refused = with(&write.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        refused.code(1);
        assert!(
            refused.stderr.contains("newer stent") && refused.stderr.contains("refused"),
            "{write:?}: {}",
            refused.stderr
        );
    }
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(
        state.state,
        stent::ExecutionStatus::Pending,
        "nothing written"
    );
    let err = match &db {
        Db::Sqlite { path, .. } => stent::backends::SqliteBackend::open(path)
            .await
            .unwrap()
            .init_db()
            .await
            .unwrap_err(),
        Db::Postgres { backend, .. } => backend.init_db().await.unwrap_err(),
    };
    assert!(
        matches!(
            err,
            stent::journal::store::StoreError::SchemaTooNew { found: 99, .. }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_sqlite_schema_is_never_written() {
    a_newer_schema_is_read_with_a_warning_and_never_written(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_postgres_schema_is_never_written() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    a_newer_schema_is_read_with_a_warning_and_never_written(db).await;
}

#[stent::durable]
async fn naps(hours: u64) -> Result<(), String> {
    Stent::sleep(Duration::from_secs(hours * 3600))
        .await
        .map_err(|e| e.to_string())
}

fn hourly() -> stent::RetryPolicy {
    stent::RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_secs(3600))
}

#[stent::durable(retry_policy = hourly())]
async fn flaky(n: u64) -> Result<u64, String> {
    Err(format!("flaky {n} failed"))
}

#[stent::durable]
async fn calls_flaky(n: u64) -> Result<u64, String> {
    flaky(n).await
}

#[stent::durable]
async fn unserved_charge(n: u64) -> Result<u64, String> {
    Ok(n)
}

#[stent::durable]
async fn calls_unserved(n: u64) -> Result<u64, String> {
    unserved_charge(n).await
}

/// `stent show` (text and JSON) and `stent list` say what a running
/// execution waits for: a timer (its due time), a signal (its name), a call
/// being retried (the next attempt and when), a call that was
/// dead-lettered (the reason), a call of a function no live worker serves
/// (since when), and an execution no live worker can claim.
async fn what_executions_wait_for(db: Db) {
    let executor = db.executor().await;
    // A worker that serves all of these but `unserved_charge`.
    let mut registry = stent::FunctionRegistry::new();
    registry
        .register(naps)
        .register(awaits_approval)
        .register(calls_flaky)
        .register(flaky)
        .register(calls_hopeless)
        .register(common::hopeless)
        .register(calls_unserved);
    let sleeping = executor.dispatch(naps(5)).await.unwrap();
    let signal = executor
        .dispatch(awaits_approval("doc-9".into()))
        .await
        .unwrap();
    let retrying = executor.dispatch(calls_flaky(1)).await.unwrap();
    let dead = executor.dispatch(calls_hopeless(2)).await.unwrap();
    let unserved = executor.dispatch(calls_unserved(3)).await.unwrap();
    let worker_executor = db.executor_with(registry).await;
    let worker = Worker::start(&worker_executor).await;
    let waits_of = |id: ExecutionId| {
        let v = db.json(&["show", &id.to_string()]);
        v["waits"].as_array().cloned().unwrap_or_default()
    };
    let settled = |id: ExecutionId, kind: &'static str, task: Option<&'static str>| {
        let waits_of = &waits_of;
        async move {
            for _ in 0..500 {
                let waits = waits_of(id);
                if waits
                    .iter()
                    .any(|w| w["kind"] == kind && task.is_none_or(|t| w["task"]["state"] == t))
                {
                    return waits;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!(
                "{id} never waited for a {kind} {task:?}: {:?}",
                waits_of(id)
            );
        }
    };
    let w = settled(sleeping, "timer", None).await;
    assert!(w[0]["due"].as_str().is_some(), "{w:?}");
    let w = settled(signal, "signal", None).await;
    assert_eq!(w[0]["name"], "approval");
    // A signal under a name the code never waits for stays in sight.
    executor
        .send_signal(signal, "aproval", &"bob")
        .await
        .unwrap();
    let v = db.json(&["show", &signal.to_string()]);
    assert_eq!(v["unconsumed_signals"][0]["name"], "aproval", "{v}");
    let out = db.stent(&["show", &signal.to_string()]);
    assert!(
        out.stdout
            .contains("\"aproval\" sent, not taken by a wait yet: \"bob\""),
        "{}",
        out.stdout
    );
    let w = settled(retrying, "call", Some("retrying")).await;
    assert_eq!(w[0]["task"]["attempt"], 2, "{w:?}");
    assert!(
        w[0]["task"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("flaky")),
        "{w:?}"
    );
    let child = w[0]["child"].as_str().unwrap();
    let out = db.stent(&["tasks", "show", child]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("failed") && l.contains("flaky")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("failed") && l.contains("attempt 1 at ")),
        "{}",
        out.stdout
    );
    let task = db.json(&["tasks", "show", child]);
    assert!(task["last_failure"]["at"].is_string(), "{task}");
    // Each retried attempt, numbered, with its time and error.
    assert_eq!(task["failures"][0]["attempt"], 1, "{task}");
    assert!(task["failures"][0]["at"].is_string(), "{task}");
    assert!(
        task["failures"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("flaky")),
        "{task}"
    );
    assert!(w[0]["function"].as_str().unwrap().ends_with("::flaky"));
    let w = settled(dead, "call", Some("dead_lettered")).await;
    assert!(
        w[0]["task"]["reason"]
            .as_str()
            .unwrap()
            .contains("hopeless 2"),
        "{w:?}"
    );
    // No live worker serves `unserved_charge`: the call says so.
    // stats counts the sleeping workflow and the retried call as LATER
    // (runnable at a time to come), not as ready.
    let out = db.stent(&["stats"]);
    assert!(out.stdout.contains("QUEUE    DUE  LATER"), "{}", out.stdout);
    let later: u64 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("default "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(later >= 2, "{}", out.stdout);
    let w = settled(unserved, "call", Some("unserved")).await;
    assert!(w[0]["task"]["since"].as_str().is_some(), "{w:?}");
    assert!(
        w[0]["text"]
            .as_str()
            .unwrap()
            .contains("no live worker serves it"),
        "{w:?}"
    );
    // stats names the function no live worker serves, with its backlog.
    let out = db.stent(&["stats"]);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("unserved")
            && l.contains("::unserved_charge in queue default: 1 ready")
            && l.contains("no live worker serves it")),
        "{}",
        out.stdout
    );
    let v = db.json(&["stats"]);
    let unserved_json = v["unserved"].as_array().cloned().unwrap_or_default();
    assert!(
        unserved_json.iter().any(|u| u["function"]
            .as_str()
            .is_some_and(|f| f.ends_with("::unserved_charge"))
            && u["tasks"] == 1
            && u["queue"] == "default"
            && u["since"].is_string()),
        "{v}"
    );
    // The workflows the worker serves are not listed.
    assert!(
        unserved_json.iter().all(|u| !u["function"]
            .as_str()
            .is_some_and(|f| f.ends_with("::naps"))),
        "{v}"
    );
    worker.stop().await;

    // With every worker stopped (and retired), a new one waits for a claim
    // no live worker can make.
    let pending = executor.dispatch(naps(1)).await.unwrap();
    let w = settled(pending, "claim", None).await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0]["served"], false, "{w:?}");

    // The same in words.
    let out = db.stent(&["show", &retrying.to_string()]);
    out.ok();
    assert!(
        out.stdout.contains("retrying: attempt 2 at"),
        "{}",
        out.stdout
    );
    let out = db.stent(&["show", &sleeping.to_string()]);
    assert!(
        out.stdout.contains("waiting    timer due"),
        "{}",
        out.stdout
    );
    // The calls table says a dead-lettered call is one.
    let out = db.stent(&["show", &dead.to_string()]);
    assert!(
        out.stdout.lines().any(|l| l.contains("::hopeless")
            && l.contains("dead-lettered")
            && !l.starts_with("waiting")),
        "{}",
        out.stdout
    );
    let out = db.stent(&["list", "--limit", "10"]);
    assert!(
        out.stdout.contains("waiting: signal \"approval\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("dead-lettered: panicked"),
        "{}",
        out.stdout
    );
}

/// A signal whose payload is not what the workflow waits for (a number for
/// a `String`) pauses the execution with a report instead of failing it;
/// the plain `stent` binary resumes it, and a good signal completes it.
async fn a_signal_typo_pauses_and_the_plain_binary_resumes(db: Db) {
    let executor = db.executor().await;
    let worker = Worker::start(&executor).await;
    let id = executor
        .dispatch(awaits_approval("doc-5".into()))
        .await
        .unwrap();
    let id_text = id.to_string();
    db.stent(&["signal", &id_text, "approval", "5", "--json-payload"])
        .ok();
    let mut report = String::new();
    for _ in 0..500 {
        let v = db.json(&["show", &id_text]);
        if v["state"] == "paused" {
            report = v["pause_report"].as_str().unwrap_or_default().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        report.contains("signal \"approval\"") && report.contains("String"),
        "{report}"
    );
    let out = db.stent(&["resume", &id_text]);
    out.ok();
    assert!(out.stdout.contains("resumed execution"), "{}", out.stdout);
    db.stent(&["signal", &id_text, "approval", "alice"]).ok();
    let got = executor
        .wait_for::<String, String>(id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(got, Ok("doc-5 approved by alice".to_string()));
    worker.stop().await;
}

/// `--json` output cut short by its reader exits quietly, like a table;
/// under `--json` an error is JSON on stderr with a kind and the same exit
/// code; `list --limit 0` is refused by the parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_quiet_and_json_errors_are_json() {
    let db = Db::sqlite().await;
    let executor = db.executor().await;
    // More output than a pipe holds, so the writer meets the closed end.
    for n in 0..300 {
        executor.dispatch(common::charge(n, 1)).await.unwrap();
    }
    let db_path = db.args()[1].clone();
    for mode in ["--json", "--no-color"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "\"$0\" --db \"$1\" {mode} list --limit 300 | head -c 20 >/dev/null"
            ))
            .arg(env!("CARGO_BIN_EXE_stent"))
            .arg(&db_path)
            .output()
            .expect("run through a pipe");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("error"),
            "{mode}: {stderr}"
        );
    }
    // The exit code itself, without a shell in between.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stent"))
        .args(["--db", &db_path, "--json", "list", "--limit", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a closed pipe is not a failure");

    let out = db.stent(&["--json", "show", &ExecutionId::new_random().to_string()]);
    out.code(1);
    let err: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(err["kind"], "not_found", "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("not found"),
        "{err}"
    );

    let out = db.stent(&["list", "--limit", "0"]);
    out.code(2);
    assert!(out.stderr.contains("--limit"), "{}", out.stderr);
}

/// A database that cannot be reached is a failure whose JSON says so in a
/// field a script can test, not only in the message.
#[test]
fn an_unreachable_database_says_unavailable_in_json() {
    let out = common::run_stent(&[
        "--db".to_string(),
        "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2".to_string(),
        "--json".to_string(),
        "list".to_string(),
    ]);
    out.code(1);
    let err: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(err["kind"], "failed", "{err}");
    assert_eq!(err["database"]["kind"], "unavailable", "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("127.0.0.1:1"),
        "{err}"
    );
}
