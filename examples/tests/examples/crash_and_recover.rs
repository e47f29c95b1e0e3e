use std::process::Stdio;

use stent_examples::crash_and_recover::{STEPS, count, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_is_replaced_and_completed_steps_do_not_rerun() {
    let dir = stent_examples::support::temp_dir("crash").unwrap();
    let report = run(&dir.join("stent.db"), &dir.join("steps.log"), || {
        let mut command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_stent-examples-crash-worker"));
        command.stdout(Stdio::null());
        command
    })
    .await
    .unwrap();

    assert_eq!(report.result, (1..=STEPS).map(|s| s * 10).sum::<u32>());
    let log = &report.log;
    let (first, second) = report.workers;
    assert_ne!(first, second);
    for step in [1, 2] {
        assert_eq!(count(log, &format!("begin {step}")), 1, "{log:#?}");
        assert_eq!(count(log, &format!("done {step}")), 1, "{log:#?}");
    }
    assert!(
        log.contains(&format!("begin 3 pid {first}")),
        "step 3 began in the killed worker: {log:#?}"
    );
    assert_eq!(count(log, "done 3"), 1, "{log:#?}");
    assert!(log.contains(&format!("done 3 pid {second}")), "{log:#?}");
    for step in 4..=STEPS {
        assert_eq!(count(log, &format!("begin {step}")), 1, "{log:#?}");
        assert!(
            log.contains(&format!("done {step} pid {second}")),
            "{log:#?}"
        );
    }
    let completed = |kinds: &[String]| kinds.iter().filter(|k| *k == "call_completed").count();
    assert_eq!(completed(&report.journal_at_kill), 2);
    assert_eq!(
        report.journal_at_kill.last().map(String::as_str),
        Some("call_scheduled")
    );
    assert_eq!(completed(&report.journal_at_end), STEPS as usize);
    assert_eq!(
        report.journal_at_end.last().map(String::as_str),
        Some("completed")
    );
    let _ = std::fs::remove_dir_all(dir);
}
