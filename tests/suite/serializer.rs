//! The executor's serializer (`Serializer::Cbor` | `Serializer::Json`): what
//! each accepts, what lands in the journal, and that journals written under
//! one stay readable under the other.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::backends::MemoryBackend;
use stent::journal::Event;
use stent::{Error, ExecutionId, ExecutionStatus, Serializer, Stent};
use stent_tests::TestWorker;

const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    lines: Vec<(String, u32)>,
    bytes: Vec<u8>,
}

#[stent::durable]
async fn price(order: Order) -> Result<u64, String> {
    Ok(order
        .lines
        .iter()
        .map(|(_, qty)| u64::from(*qty) * 250)
        .sum())
}

#[stent::durable]
async fn checkout(order: Order) -> Result<String, String> {
    let total = price(order.clone()).await?;
    let ctx = Stent::context().map_err(|e| e.to_string())?;
    ctx.state("phase")
        .set(&serde_json::json!({"step": "priced", "total": total}))
        .map_err(|e| e.to_string())?;
    let note: String = Stent::wait_for_signal("note")
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("order {} costs {total} ({note})", order.id))
}

#[stent::durable]
async fn by_slot(slots: BTreeMap<u32, String>) -> Result<usize, String> {
    Ok(slots.len())
}

#[stent::durable]
async fn invert(words: Vec<String>) -> Result<BTreeMap<u32, String>, String> {
    Ok(words
        .into_iter()
        .enumerate()
        .map(|(i, w)| (i as u32, w))
        .collect())
}

#[stent::durable]
async fn by_pair(cells: Vec<(u8, u8)>) -> Result<BTreeMap<(u8, u8), u8>, String> {
    Ok(cells.into_iter().map(|c| (c, c.0 + c.1)).collect())
}

#[stent::durable]
async fn count_pairs(cells: BTreeMap<(u8, u8), u8>) -> Result<usize, String> {
    Ok(cells.len())
}

fn order() -> Order {
    Order {
        id: 7,
        lines: vec![("tea".into(), 2), ("cup".into(), 1)],
        bytes: vec![0, 255, 7],
    }
}

/// Every payload in every journal of the execution.
async fn journal_payloads(executor: &Stent, id: ExecutionId) -> Vec<stent::Payload> {
    let journals = executor
        .backend()
        .read_execution_journal(id, None)
        .await
        .expect("journal reads");
    let mut payloads = Vec::new();
    for (_, rows) in journals {
        for row in rows {
            match Event::decode(&row.bytes).expect("event decodes") {
                Event::Started { args, .. } | Event::CallScheduled { args, .. } => {
                    payloads.push(args)
                }
                Event::CallCompleted { value, .. } | Event::Completed { value } => {
                    payloads.push(value)
                }
                Event::SignalReceived { payload, .. } => payloads.push(payload),
                Event::ContextWrite {
                    write: stent::journal::event::ContextWrite::StateSet { value, .. },
                } => payloads.push(value),
                _ => {}
            }
        }
    }
    payloads
}

async fn run_checkout(executor: &Stent) -> ExecutionId {
    let worker = TestWorker::start(executor).await;
    let id = executor.dispatch(checkout(order())).await.unwrap();
    executor
        .send_signal(id, "note", &"gift wrap")
        .await
        .unwrap();
    let out = executor
        .wait_for::<String, String>(id, LIMIT)
        .await
        .unwrap();
    assert_eq!(out.unwrap(), "order 7 costs 750 (gift wrap)");
    worker.stop().await;
    id
}

#[tokio::test(start_paused = true)]
async fn json_executor_runs_a_workflow_and_every_payload_reads_back_as_json() {
    let executor = Stent::builder(MemoryBackend::new())
        .serializer(Serializer::Json)
        .build();
    let id = run_checkout(&executor).await;

    let payloads = journal_payloads(&executor, id).await;
    // Started (root + child), CallScheduled, CallCompleted, StateSet,
    // SignalReceived, Completed (root + child).
    assert!(payloads.len() >= 7, "{payloads:?}");
    for p in &payloads {
        p.decode::<serde_json::Value>()
            .unwrap_or_else(|e| panic!("{p:?} is not JSON data: {e}"));
    }
    let state = executor.state_of(id).await.unwrap();
    let phase: serde_json::Value = state.custom_state_as("phase").unwrap().unwrap();
    assert_eq!(phase, serde_json::json!({"step": "priced", "total": 750}));
}

#[tokio::test(start_paused = true)]
async fn cbor_is_the_default_and_keeps_non_json_values() {
    let executor = Stent::new(MemoryBackend::new());
    run_checkout(&executor).await;

    // Integer map keys have no JSON form; CBOR keeps them.
    let worker = TestWorker::start(&executor).await;
    let slots: BTreeMap<u32, String> = [(3, "c".to_string()), (1, "a".to_string())].into();
    let id = executor.dispatch(by_slot(slots)).await.unwrap();
    let n = executor.wait_for::<usize, String>(id, LIMIT).await.unwrap();
    assert_eq!(n.unwrap(), 2);
    let started = &journal_payloads(&executor, id).await[0];
    assert!(
        started.decode::<serde_json::Value>().is_err(),
        "integer keys are stored as integers under CBOR"
    );
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn json_executor_refuses_arguments_json_cannot_hold_at_dispatch() {
    let executor = Stent::builder(MemoryBackend::new())
        .serializer(Serializer::Json)
        .build();
    let cells: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let err = executor.dispatch(count_pairs(cells)).await.unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not representable in JSON"), "{message}");
    assert!(
        executor
            .list_executions(10, 0, None)
            .await
            .unwrap()
            .is_empty(),
        "nothing is stored for a refused dispatch"
    );
    let err = executor
        .send_signal(ExecutionId::new_random(), "x", &slots_map())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("JSON"), "{err}");
}

fn slots_map() -> BTreeMap<(u8, u8), u32> {
    [((1, 1), 1)].into()
}

#[tokio::test(start_paused = true)]
async fn json_writes_integer_map_keys_as_strings_and_reads_them_back() {
    let executor = Stent::builder(MemoryBackend::new())
        .serializer(Serializer::Json)
        .build();
    let worker = TestWorker::start(&executor).await;
    let slots: BTreeMap<u32, String> = [(3, "c".to_string()), (1, "a".to_string())].into();
    let id = executor.dispatch(by_slot(slots)).await.unwrap();
    assert_eq!(
        executor.wait_for::<usize, String>(id, LIMIT).await.unwrap(),
        Ok(2)
    );
    let started = &journal_payloads(&executor, id).await[0];
    assert_eq!(
        started.decode::<serde_json::Value>().unwrap(),
        serde_json::json!([{"1": "a", "3": "c"}])
    );

    let id = executor
        .dispatch(invert(vec!["a".into(), "b".into()]))
        .await
        .unwrap();
    let out = executor
        .wait_for::<BTreeMap<u32, String>, String>(id, LIMIT)
        .await
        .unwrap();
    assert_eq!(out.unwrap(), [(0, "a".into()), (1, "b".into())].into());
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_result_json_cannot_hold_fails_the_execution_with_a_clear_reason() {
    let executor = Stent::builder(MemoryBackend::new())
        .serializer(Serializer::Json)
        .build();
    let worker = TestWorker::start(&executor).await;
    let id = executor.dispatch(by_pair(vec![(1, 2)])).await.unwrap();
    let outcome = executor
        .wait_for::<BTreeMap<(u8, u8), u8>, String>(id, LIMIT)
        .await;
    let err = outcome.expect_err("the result cannot be stored as JSON");
    assert!(err.to_string().contains("JSON"), "{err}");
    let state = executor.state_of(id).await.unwrap();
    assert_eq!(state.state, ExecutionStatus::Failed);
    worker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_journal_written_under_cbor_finishes_under_json() {
    let backend = MemoryBackend::new();
    let cbor = Stent::new(backend.clone());
    let id = cbor.dispatch(checkout(order())).await.unwrap();
    cbor.send_signal(id, "note", &"fragile").await.unwrap();

    let json = Stent::builder(backend).serializer(Serializer::Json).build();
    let worker = TestWorker::start(&json).await;
    let out = json.wait_for::<String, String>(id, LIMIT).await.unwrap();
    assert_eq!(out.unwrap(), "order 7 costs 750 (fragile)");
    worker.stop().await;
}

#[test]
fn serializer_names_parse_and_pickle_is_refused_with_a_reason() {
    assert_eq!("json".parse::<Serializer>().unwrap(), Serializer::Json);
    assert_eq!("CBOR".parse::<Serializer>().unwrap(), Serializer::Cbor);
    assert_eq!(Serializer::default(), Serializer::Cbor);
    assert_eq!(Serializer::Json.name(), "json");
    let err = "pickle".parse::<Serializer>().unwrap_err().to_string();
    assert!(err.contains("pickle") && err.contains("run code"), "{err}");
}
