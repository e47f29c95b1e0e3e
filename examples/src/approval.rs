//! Human approval: a workflow asks for approval and waits for a signal with
//! a timeout (`Stent::wait_for_signal_timeout`). Three expense reports show
//! the three endings: approved, rejected, and expired (nobody answered in
//! time).
//!
//! The waiting workflow holds no worker slot, and the wait is durable: the
//! deadline was recorded when the wait began, so a restart neither extends
//! nor forgets it. Signals are sent here with `executor.send_signal` from the
//! same program; any process with access to the database can send them:
//! [`run_waiting_for_cli`] waits for a person to answer with the `stent`
//! command line (`stent signal ID approval '{...}' --json-payload`).
//! A signal sent before the workflow starts waiting is kept for it.
//!
//! ```sh
//! cargo run -p stent-examples --example approval
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{ExecutionId, IntoDuration, Stent};

use crate::support::LocalWorker;

/// The signal's name.
pub const SIGNAL: &str = "approval";

/// An expense report to approve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expense {
    /// Report id.
    pub id: String,
    /// Who asks.
    pub employee: String,
    /// How much, in cents.
    pub cents: u64,
    /// What for.
    pub reason: String,
}

/// The signal's payload: an approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Approved or not.
    pub approved: bool,
    /// Who answered.
    pub by: String,
    /// Why.
    pub comment: String,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Approved (and paid).
    Approved {
        /// Approver.
        by: String,
        /// Payment reference.
        payment: String,
    },
    /// Rejected.
    Rejected {
        /// Approver.
        by: String,
        /// Why.
        comment: String,
    },
    /// Nobody answered in time.
    Expired,
}

/// Sends the approval request to the approvers (simulated).
#[stent::durable]
pub async fn notify_approvers(expense: Expense) -> Result<(), String> {
    println!(
        "  [{}] asked the approvers about {} cents for {:?} by {}",
        expense.id, expense.cents, expense.reason, expense.employee
    );
    Ok(())
}

/// Pays an approved expense (simulated); returns the payment reference.
#[stent::durable]
pub async fn pay(expense: Expense) -> Result<String, String> {
    let payment = format!("PAY-{}", expense.id);
    println!(
        "  [{}] paid {} cents -> {payment}",
        expense.id, expense.cents
    );
    Ok(payment)
}

/// Tells the employee how it ended (simulated).
#[stent::durable]
pub async fn notify_employee(expense: Expense, outcome: String) -> Result<(), String> {
    println!("  [{}] told {}: {outcome}", expense.id, expense.employee);
    Ok(())
}

/// The workflow: asks for approval, waits for the `approval` signal for at
/// most `timeout` (a duration string such as `"3s"` or `"48h"`), then pays,
/// or not. The custom state `status` says where it is.
#[stent::durable]
pub async fn approve_expense(expense: Expense, timeout: String) -> Result<Decision, String> {
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    notify_approvers(expense.clone()).await?;
    ctx.state("status")
        .set("waiting for approval")
        .map_err(|e| e.to_string())?;
    let verdict: Option<Verdict> = Stent::wait_for_signal_timeout(SIGNAL, timeout.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let decision = match verdict {
        Some(v) if v.approved => {
            let payment = pay(expense.clone()).await?;
            Decision::Approved { by: v.by, payment }
        }
        Some(v) => Decision::Rejected {
            by: v.by,
            comment: v.comment,
        },
        None => Decision::Expired,
    };
    let outcome = match &decision {
        Decision::Approved { by, .. } => format!("approved by {by}"),
        Decision::Rejected { by, comment } => format!("rejected by {by}: {comment}"),
        Decision::Expired => format!("no answer within {timeout}, request expired"),
    };
    notify_employee(expense, outcome).await?;
    ctx.state("status").set("done").map_err(|e| e.to_string())?;
    Ok(decision)
}

/// What [`run`] observed: the three decisions, in order (approved,
/// rejected, expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalReport {
    /// The three decisions.
    pub decisions: Vec<Decision>,
}

/// Waits until the workflow `id` has set its `status` (it is then waiting
/// for the signal, or about to).
async fn wait_until_waiting(executor: &Stent, id: ExecutionId) -> crate::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Option<String> = executor.state_of(id).await?.custom_state_as("status")?;
        if status.is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("execution {id} did not start waiting within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the example: three expense reports, each waiting at most `timeout`
/// for an answer; the first is approved, the second rejected, the third
/// gets no answer and expires.
pub async fn run(executor: &Stent, suffix: &str, timeout: &str) -> crate::Result<ApprovalReport> {
    let limit: Duration = timeout.into_duration()?;
    let worker = LocalWorker::start(executor, |w| w).await;
    let expenses = [
        ("laptop", "Ada", 189_900),
        ("team dinner", "Grace", 42_000),
        ("conference", "Linus", 95_000),
    ];
    let mut ids = Vec::new();
    for (i, (reason, employee, cents)) in expenses.into_iter().enumerate() {
        let expense = Expense {
            id: format!("EXP-{}{suffix}", i + 1),
            employee: employee.into(),
            cents,
            reason: reason.into(),
        };
        let id = executor
            .dispatch(approve_expense(expense.clone(), timeout.into()))
            .await?;
        println!(
            "dispatched {} ({reason}, {cents} cents): execution {id}",
            expense.id
        );
        ids.push(id);
    }
    for id in &ids {
        wait_until_waiting(executor, *id).await?;
    }
    println!("all three wait for a signal named {SIGNAL:?} (timeout {limit:?})");

    let approve = Verdict {
        approved: true,
        by: "Margaret".into(),
        comment: "ok".into(),
    };
    let reject = Verdict {
        approved: false,
        by: "Margaret".into(),
        comment: "over the team budget".into(),
    };
    println!("sending: approve EXP-1, reject EXP-2, nothing for EXP-3");
    executor.send_signal(ids[0], SIGNAL, &approve).await?;
    executor.send_signal(ids[1], SIGNAL, &reject).await?;

    let mut decisions = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let decision = executor
            .wait_for::<Decision, String>(*id, Some(limit + Duration::from_secs(60)))
            .await??;
        println!("EXP-{}: {decision:?}", i + 1);
        decisions.push(decision);
    }
    worker.stop().await?;
    Ok(ApprovalReport { decisions })
}

/// The command that answers execution `id` from another process with the
/// `stent` command line: `approved` or not, by `by`.
pub fn cli_command(db: &str, id: ExecutionId, approved: bool, by: &str) -> String {
    let comment = if approved { "ok" } else { "not this time" };
    format!(
        "stent --db {db} signal {id} {SIGNAL} \
         '{{\"approved\":{approved},\"by\":\"{by}\",\"comment\":\"{comment}\"}}' --json-payload"
    )
}

/// The example in its waiting form: one expense report waits at most
/// `timeout` for a person to answer from another process with the `stent`
/// command line (the commands are printed); returns how it ended. `db` is
/// the database path as that other process should name it.
pub async fn run_waiting_for_cli(
    executor: &Stent,
    db: &str,
    timeout: &str,
) -> crate::Result<(ExecutionId, Decision)> {
    let limit: Duration = timeout.into_duration()?;
    let worker = LocalWorker::start(executor, |w| w).await;
    let expense = Expense {
        id: "EXP-42".into(),
        employee: "Ada".into(),
        cents: 129_900,
        reason: "standing desk".into(),
    };
    let id = executor
        .dispatch(approve_expense(expense, timeout.into()))
        .await?;
    wait_until_waiting(executor, id).await?;
    println!("execution {id} waits for a signal named {SIGNAL:?} (timeout {timeout}).");
    println!("Answer it from another terminal with the stent command line");
    println!("(`cargo run -p stent-cli --bin stent --` if it is not installed):");
    println!("  approve: {}", cli_command(db, id, true, "Margaret"));
    println!("  reject:  {}", cli_command(db, id, false, "Margaret"));
    println!("  look:    stent --db {db} show {id}");
    let decision = executor
        .wait_for::<Decision, String>(id, Some(limit + Duration::from_secs(60)))
        .await??;
    println!("EXP-42: {decision:?}");
    worker.stop().await?;
    Ok((id, decision))
}
