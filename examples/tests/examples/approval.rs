use stent_examples::approval::{ApprovalReport, Decision, run};

fn check(report: &ApprovalReport, suffix: &str) {
    assert_eq!(
        report.decisions,
        vec![
            Decision::Approved {
                by: "Margaret".into(),
                payment: format!("PAY-EXP-1{suffix}"),
            },
            Decision::Rejected {
                by: "Margaret".into(),
                comment: "over the team budget".into(),
            },
            Decision::Expired,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn approve_reject_and_expire_in_memory_with_a_48h_timeout() {
    let started = tokio::time::Instant::now();
    let report = run(&crate::memory(), "-mem", "48h").await.unwrap();
    check(&report, "-mem");
    assert!(started.elapsed() >= std::time::Duration::from_secs(48 * 3600));
}

#[tokio::test]
async fn approve_reject_and_expire_on_sqlite() {
    let (executor, dir) = crate::sqlite("approval").await;
    let report = run(&executor, "-sqlite", "1s").await.unwrap();
    check(&report, "-sqlite");
    crate::cleanup(dir);
}

/// The waiting form of the example, answered from a second process: the
/// `stent` command line (the examples' build of it) sends the signal, exactly
/// as the example tells a person to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_from_a_second_process_with_the_stent_cli() {
    use stent_examples::approval::{SIGNAL, cli_command, run_waiting_for_cli};

    let (executor, dir) = crate::sqlite("approval-cli").await;
    let db = dir.join("stent.db").display().to_string();
    let waiting = {
        let executor = executor.clone();
        let db = db.clone();
        tokio::spawn(async move { run_waiting_for_cli(&executor, &db, "10m").await.unwrap() })
    };
    // The execution the example dispatched, once it waits for the signal.
    let id = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let running = executor
                .list_executions(10, 0, Some(stent::ExecutionStatus::Running))
                .await
                .unwrap();
            if let Some(e) = running.iter().find(|e| {
                e.custom_state.contains_key("status") && e.function.ends_with("approve_expense")
            }) {
                return e.id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the example waits for approval");

    // The printed command, run as printed (minus the shell quoting).
    let printed = cli_command(&db, id, true, "Margaret");
    let payload = printed.split('\'').nth(1).expect("a quoted payload");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stent-examples-cli"))
        .args([
            "--db",
            &db,
            "signal",
            &id.to_string(),
            SIGNAL,
            payload,
            "--json-payload",
        ])
        .output()
        .expect("run the stent command line");
    assert!(
        out.status.success(),
        "stent signal failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent signal"));

    let (ran, decision) = waiting.await.unwrap();
    assert_eq!(ran, id);
    assert_eq!(
        decision,
        Decision::Approved {
            by: "Margaret".into(),
            payment: "PAY-EXP-42".into(),
        }
    );
    // The same binary reads the result back.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stent-examples-cli"))
        .args(["--db", &db, "--json", "show", &id.to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("\"state\": \"completed\""), "{shown}");
    assert!(shown.contains("PAY-EXP-42"), "{shown}");
    crate::cleanup(dir);
}
