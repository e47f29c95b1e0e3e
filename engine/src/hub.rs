//! In-process wake-ups. They only make things faster: every waiter also
//! polls the backend with backoff, so a lost wake-up costs latency, never
//! correctness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use stent_journal::{ExecutionId, InvocationId};
use tokio::sync::Notify;

/// Wake-ups shared by an executor and the workers it runs.
#[derive(Default)]
pub(crate) struct Hub {
    /// New runnable work may exist (dispatch, spawned children, a parked task woken).
    pub work: Notify,
    /// Some execution ended.
    pub finished: Notify,
    /// Invocations resident in a worker of this process, by id.
    residents: Mutex<HashMap<InvocationId, (ExecutionId, Arc<Notify>)>>,
}

impl Hub {
    pub fn add_resident(&self, invocation: InvocationId, execution: ExecutionId) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.lock().insert(invocation, (execution, notify.clone()));
        notify
    }

    pub fn remove_resident(&self, invocation: InvocationId) {
        self.lock().remove(&invocation);
    }

    /// Wakes a resident invocation (a delivery for it arrived).
    pub fn wake_invocation(&self, invocation: InvocationId) {
        if let Some((_, n)) = self.lock().get(&invocation) {
            n.notify_one();
        }
    }

    /// Wakes every resident invocation of an execution (a signal arrived).
    pub fn wake_execution(&self, execution: ExecutionId) {
        for (exec, n) in self.lock().values() {
            if *exec == execution {
                n.notify_one();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InvocationId, (ExecutionId, Arc<Notify>)>> {
        self.residents.lock().unwrap_or_else(|p| p.into_inner())
    }
}
