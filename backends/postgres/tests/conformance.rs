//! The shared conformance suite, run against [`stent_postgres::PostgresBackend`]
//! on a fresh schema per test (dropped afterwards), so the tests run in
//! parallel. The server is `STENT_TEST_PG_URL`; see `common/mod.rs` for what
//! happens when it is unreachable.

mod common;

use std::sync::Arc;

use stent_journal::store::JournalStore;

stent_conformance::conformance_tests!(optional: common::fixture());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_execution_journal_groups_by_invocation() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    let reader = fixture.backend.clone();
    stent_conformance::read_execution_journal_groups_by_invocation(
        Arc::new(fixture.backend.clone()),
        move |execution, kinds| {
            let reader = reader.clone();
            async move {
                reader
                    .read_execution_journal(execution, kinds.as_deref())
                    .await
            }
        },
    )
    .await;
    drop(fixture);
}
