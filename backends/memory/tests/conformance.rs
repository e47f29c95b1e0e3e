//! The shared conformance suite, run against [`stent_memory::MemoryBackend`].

use std::sync::Arc;

use stent_journal::store::JournalStore;
use stent_memory::MemoryBackend;

stent_conformance::conformance_tests!(async { MemoryBackend::new() });

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_execution_journal_groups_by_invocation() {
    let backend = MemoryBackend::new();
    let reader = backend.clone();
    stent_conformance::read_execution_journal_groups_by_invocation(
        Arc::new(backend),
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
}
