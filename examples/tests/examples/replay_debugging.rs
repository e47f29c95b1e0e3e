//! The replay debugger from the command line: `stent-replay-debugging` (the
//! embeddable CLI with the example's functions) against a SQLite file this
//! test fills with the recorded code. With the changed code compiled in, it
//! reports the exact seq and field that changed; `--step` is driven by
//! scripted standard input; `fork` moves the failed report onto the fix.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use stent::Stent;
use stent::backends::SqliteBackend;
use stent_examples::replay_debugging::{Code, record, registry};
use stent_examples::support::LocalWorker;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, the changed code when `changed`, and
/// `stdin` as its standard input.
fn cli(changed: bool, args: &[&str], stdin: &str) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stent-replay-debugging"));
    command
        .args(args)
        .env_remove("STENT_DB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if changed {
        command.env("STENT_EXAMPLE_CODE", "changed");
    } else {
        command.env_remove("STENT_EXAMPLE_CODE");
    }
    let mut child = command.spawn().expect("run stent-replay-debugging");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_step_and_fork_from_the_command_line() {
    let dir = stent_examples::support::temp_dir("replay-debugging").expect("temp dir");
    let path = dir.join("stent.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.init_db().await.unwrap();
    let executor = Stent::builder(backend.clone())
        .function_registry(registry(Code::Recorded))
        .build();
    let recorded = record(&executor).await.unwrap();
    let db = path.display().to_string();
    let checkout = recorded.checkout.to_string();

    // The code that recorded it replays it cleanly.
    let out = cli(false, &["--db", &db, "replay", &checkout], "");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("replays cleanly"), "{}", out.stdout);

    // The changed code: exit 3, the exact seq and field.
    let out = cli(true, &["--db", &db, "replay", &checkout], "");
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("seq 1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("args[0].items[2].qty: 3 -> 4"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("does not replay"), "{}", out.stderr);
    let out = cli(
        true,
        &["--db", &db, "--json", "replay", &checkout, "--all"],
        "",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains("\"path\": \"args[1]\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\"recorded\": \"4200\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"asked\": \"4300\""), "{}", out.stdout);

    // Exported, then stepped through from the file with scripted input.
    let file = dir.join("checkout.stent").display().to_string();
    let out = cli(
        false,
        &["--db", &db, "journal", &checkout, "--export", &file],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(
        true,
        &["replay", "--file", &file, "--all", "--step"],
        "n\np\nc\n",
    );
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let transcript = &out.stdout;
    assert!(transcript.contains("seq 1 ── DIVERGES"), "{transcript}");
    assert!(
        transcript.contains("changed:    args[0].items[2].qty: 3 -> 4"),
        "{transcript}"
    );
    // Commands read from a pipe are echoed after the prompt.
    assert!(transcript.contains("(q)uit > n\n"), "{transcript}");
    assert!(transcript.contains("(q)uit > p\n"), "{transcript}");
    assert!(transcript.contains("      call_key: "), "{transcript}");
    assert!(transcript.contains("(q)uit > c\n"), "{transcript}");
    assert!(transcript.contains("seq 3 ── DIVERGES"), "{transcript}");
    assert!(
        transcript.contains("changed:    args[1]: 4200 -> 4300"),
        "{transcript}"
    );
    // With --json the session talks on standard error; standard output
    // stays one JSON document.
    let out = cli(
        true,
        &["--json", "replay", "--file", &file, "--step"],
        "c\n",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("seq 1 ── DIVERGES"), "{}", out.stderr);
    assert!(out.stdout.trim_start().starts_with('{'), "{}", out.stdout);
    assert!(out.stdout.contains("\"clean\": false"), "{}", out.stdout);
    let quit = cli(true, &["replay", "--file", &file, "--step"], "q\n");
    assert_eq!(quit.code, 3, "{}", quit.stderr);
    assert!(quit.stderr.contains("quit"), "{}", quit.stderr);

    // The failed report diverges from the fix at seq 3; fork it there.
    let report = recorded.report.to_string();
    let out = cli(true, &["--db", &db, "replay", &report], "");
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("seq 3"), "{}", out.stdout);
    assert!(out.stdout.contains("args[1]: 0 -> 2"), "{}", out.stdout);
    let out = cli(
        true,
        &["--db", &db, "--json", "fork", &report, "--at", "3"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let forked: stent::ExecutionId = out
        .stdout
        .split('"')
        .skip_while(|s| *s != "forked")
        .nth(2)
        .expect("the forked id")
        .parse()
        .unwrap();
    // A worker running the fixed code finishes it.
    let fixed = Stent::builder(backend)
        .function_registry(registry(Code::Changed))
        .build();
    let worker = LocalWorker::start(&fixed, |w| w).await;
    let total = fixed
        .wait_for::<u64, String>(forked, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    worker.stop().await.unwrap();
    assert_eq!(total, Ok(45));
    let out = cli(true, &["--db", &db, "replay", &forked.to_string()], "");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    crate::cleanup(dir);
}
