//! `stent_commit_set` against `stent_commit`: for random batches of
//! independent turns (every disposition, events, spawned tasks leased or
//! not, deliveries to parents in any state, outcomes, a lost lease), the two
//! functions leave the same rows, or refuse the batch with the same error
//! and leave nothing of it.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stent_journal::store::{LeaseGrant, NewEvent, Routing};

use super::*;
use crate::LeaseClock;

const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Hold,
    Park,
    ParkUntil(i64),
    Finish,
    Outcome(bool),
    Deliver(usize),
    DeliverAndOutcome(usize),
}

#[derive(Debug, Clone)]
struct TurnSpec {
    kind: Kind,
    events: u32,
    spawns: u32,
    leased_spawns: bool,
    now: i64,
}

/// What a parent that turns deliver to is doing meanwhile.
#[derive(Debug, Clone, Copy)]
enum Parent {
    Leased,
    Waiting,
    ReadyAt(i64),
}

#[derive(Debug, Clone)]
struct Case {
    turns: Vec<TurnSpec>,
    parents: [Parent; 2],
    /// A turn whose lease is lost (its epoch is stale).
    stale: Option<usize>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hold),
        Just(Kind::Park),
        (1..2_000i64).prop_map(Kind::ParkUntil),
        Just(Kind::Finish),
        any::<bool>().prop_map(Kind::Outcome),
        (0..2usize).prop_map(Kind::Deliver),
        (0..2usize).prop_map(Kind::DeliverAndOutcome),
    ]
}

fn parent() -> impl Strategy<Value = Parent> {
    prop_oneof![
        Just(Parent::Leased),
        Just(Parent::Waiting),
        (1..2_000i64).prop_map(Parent::ReadyAt),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let turn = (kind(), 0..4u32, 0..3u32, any::<bool>(), 0..100i64).prop_map(
        |(kind, events, spawns, leased_spawns, now)| TurnSpec {
            kind,
            events,
            spawns,
            leased_spawns,
            now,
        },
    );
    (
        prop::collection::vec(turn, 1..9),
        [parent(), parent()],
        prop::option::weighted(0.25, 0..9usize),
    )
        .prop_map(|(turns, parents, stale)| {
            let stale = stale.map(|s| s % turns.len());
            Case {
                turns,
                parents,
                stale,
            }
        })
}

fn worker() -> WorkerId {
    WorkerId::new("w")
}

fn leased_root(id: ExecutionId, function: &str) -> NewExecution {
    NewExecution {
        id,
        function: function.into(),
        created_at: Timestamp(T0),
        deadline: None,
        root: NewInvocation {
            invocation: id.root_invocation(),
            execution: id,
            function: function.into(),
            routing: Routing::default(),
            run_at: Timestamp(T0),
            started_event: vec![0xa1, 0x00],
            lease: Some(LeaseGrant {
                worker: worker(),
                until: Timestamp(T0 + 100_000),
            }),
        },
        code_version: None,
    }
}

/// The ids of one case's executions: the same in both schemas.
struct Ids {
    parents: [ExecutionId; 2],
    roots: Vec<ExecutionId>,
}

fn turns_of(case: &Case, ids: &Ids) -> Vec<TurnCommit> {
    case.turns
        .iter()
        .zip(&ids.roots)
        .enumerate()
        .map(|(i, (spec, &exec))| {
            let inv = exec.root_invocation();
            let now = Timestamp(T0 + spec.now);
            let deliver = |p: usize| {
                Some(Delivery {
                    parent: ids.parents[p].root_invocation(),
                    event: vec![i as u8; 3],
                })
            };
            let outcome = |failed: bool| {
                Some(ExecutionOutcome {
                    status: if failed {
                        ExecutionStatus::Failed
                    } else {
                        ExecutionStatus::Completed
                    },
                    terminal_event: vec![0xee, i as u8],
                })
            };
            let disposition = match spec.kind {
                Kind::Hold => TaskDisposition::Hold {
                    lease_until: Timestamp(T0 + 50_000),
                },
                Kind::Park => TaskDisposition::Park { run_at: None },
                Kind::ParkUntil(at) => TaskDisposition::Park {
                    run_at: Some(Timestamp(T0 + at)),
                },
                Kind::Finish => TaskDisposition::Finish {
                    deliver: None,
                    execution: None,
                },
                Kind::Outcome(failed) => TaskDisposition::Finish {
                    deliver: None,
                    execution: outcome(failed),
                },
                Kind::Deliver(p) => TaskDisposition::Finish {
                    deliver: deliver(p),
                    execution: None,
                },
                Kind::DeliverAndOutcome(p) => TaskDisposition::Finish {
                    deliver: deliver(p),
                    execution: outcome(false),
                },
            };
            let epoch = if case.stale == Some(i) {
                LeaseEpoch(9)
            } else {
                LeaseEpoch(1)
            };
            let mut turn = TurnCommit::bare(inv, epoch, now, disposition);
            turn.events = (1..=spec.events)
                .map(|seq| NewEvent {
                    seq: Seq(seq),
                    kind: EventKind::SideEffect,
                    call_key: (seq == 2).then_some(CallKey([2; 32])),
                    bytes: vec![seq as u8; 5],
                })
                .collect();
            turn.spawn = (0..spec.spawns)
                .map(|j| NewInvocation {
                    invocation: InvocationId::child_of(inv, Seq(100 + j)),
                    execution: exec,
                    function: "app::child".into(),
                    routing: Routing::default(),
                    run_at: now,
                    started_event: vec![0xa1, j as u8],
                    lease: spec.leased_spawns.then(|| LeaseGrant {
                        worker: worker(),
                        until: Timestamp(T0 + 60_000),
                    }),
                })
                .collect();
            turn
        })
        .collect()
}

/// Sets the case's executions up on `backend`, then commits its batch with
/// one function or the other; the commit's error, if any, as text.
async fn run(
    backend: &PostgresBackend,
    case: &Case,
    ids: &Ids,
    as_set: bool,
) -> Result<(), String> {
    for (&p, state) in ids.parents.iter().zip(case.parents) {
        backend
            .create_execution(leased_root(p, "app::parent"))
            .await
            .map_err(|e| format!("setup: {e:?}"))?;
        let park = match state {
            Parent::Leased => None,
            Parent::Waiting => Some(None),
            Parent::ReadyAt(at) => Some(Some(Timestamp(T0 + at))),
        };
        if let Some(run_at) = park {
            let turn = TurnCommit::bare(
                p.root_invocation(),
                LeaseEpoch(1),
                Timestamp(T0),
                TaskDisposition::Park { run_at },
            );
            backend
                .commit(vec![turn])
                .await
                .map_err(|e| format!("setup: {e:?}"))?;
        }
    }
    for &root in &ids.roots {
        backend
            .create_execution(leased_root(root, "app::root"))
            .await
            .map_err(|e| format!("setup: {e:?}"))?;
    }
    let turns = turns_of(case, ids);
    let mut plan = LockOrder::of(&turns);
    assert!(plan.independent, "the generated turns are independent");
    // Independent turns may go either way; the plan picks the function.
    plan.independent = as_set;
    match commit_by_function(&backend.keeper, &turns, &plan).await {
        Ok(()) => Ok(()),
        Err(Fail::Store(e)) => Err(format!("{e:?}")),
        Err(Fail::Retry(e)) => Err(format!("retry: {e:?}")),
    }
}

/// Every row of the case's executions, as JSON text, in a fixed order
/// (inbox rows in their id order, which is their delivery order).
async fn rows(backend: &PostgresBackend, ids: &Ids) -> Vec<String> {
    let executions: Vec<Uuid> = ids
        .parents
        .iter()
        .chain(&ids.roots)
        .map(|e| *e.as_uuid())
        .collect();
    let mut all = Vec::new();
    for statement in [
        "SELECT row_to_json(t)::text FROM (SELECT invocation_id, execution_id, state, run_at, \
         lease_owner, lease_until, epoch, wake, attempts, retries FROM tasks \
         WHERE execution_id = ANY($1) ORDER BY invocation_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT j.invocation_id, j.seq, j.kind, j.call_key, \
         j.payload, j.recorded_at FROM journal j JOIN tasks k USING (invocation_id) \
         WHERE k.execution_id = ANY($1) ORDER BY j.invocation_id, j.seq) t",
        "SELECT row_to_json(t)::text FROM (SELECT i.invocation_id, i.event FROM inbox i \
         JOIN tasks k USING (invocation_id) WHERE k.execution_id = ANY($1) \
         ORDER BY i.id) t",
        "SELECT row_to_json(t)::text FROM (SELECT id, status, terminal_event, completed_at \
         FROM executions WHERE id = ANY($1) ORDER BY id) t",
    ] {
        let found: Vec<String> = sqlx::query_scalar(statement)
            .bind(&executions)
            .fetch_all(backend.pool())
            .await
            .expect("read the case's rows");
        all.extend(found);
    }
    all
}

async fn schema_backend(url: &str, name: &str) -> PostgresBackend {
    let backend = PostgresBackend::builder(url)
        .schema(name)
        .lease_clock(LeaseClock::Worker)
        .build()
        .await
        .expect("connect");
    backend.init_db().await.expect("init_db");
    backend
}

#[test]
fn the_set_function_leaves_what_the_turn_by_turn_one_leaves() {
    let url = std::env::var("STENT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    if !stent_test_services::available("PostgreSQL", &url) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let suffix = ExecutionId::new_random().as_uuid().simple().to_string();
    let names = [
        format!("stent_set_a_{suffix}"),
        format!("stent_set_b_{suffix}"),
    ];
    let (by_turn, as_set) = runtime.block_on(async {
        (
            schema_backend(&url, &names[0]).await,
            schema_backend(&url, &names[1]).await,
        )
    });
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |case| {
        runtime.block_on(async {
            let ids = Ids {
                parents: [ExecutionId::new_random(), ExecutionId::new_random()],
                roots: case
                    .turns
                    .iter()
                    .map(|_| ExecutionId::new_random())
                    .collect(),
            };
            let one = run(&by_turn, &case, &ids, false).await;
            let other = run(&as_set, &case, &ids, true).await;
            prop_assert_eq!(&one, &other);
            prop_assert_eq!(one.is_err(), case.stale.is_some());
            prop_assert_eq!(rows(&by_turn, &ids).await, rows(&as_set, &ids).await);
            Ok::<(), TestCaseError>(())
        })
    });
    runtime.block_on(async {
        for name in &names {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(as_set.pool())
            .await
            .expect("drop the test schema");
        }
        by_turn.close().await;
        as_set.close().await;
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
