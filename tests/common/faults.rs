//! Storage faults at the store boundary, for backends a TCP proxy cannot sit
//! in front of (memory, SQLite): a call that fails before it reaches
//! storage, a call that lands but whose reply is lost ("committed but
//! reported failed"), and outages during which every call fails.
//!
//! [`CountingBackend`](crate::CountingBackend) runs every storage call
//! through [`StoreFaults::run`]; a test arms traps on it and counts what was
//! injected.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use stent_journal::store::{StoreError, StoreResult, TaskDisposition, TurnCommit};

/// The kinds of storage call a trap can be set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// A claim that would lease something or nothing (`claim`,
    /// `claim_with_journal`).
    Claim,
    /// A lease renewal.
    Renew,
    /// A commit of turns.
    Commit,
    /// Reading a journal.
    ReadJournal,
    /// Reading an inbox.
    Inbox,
    /// Creating an execution (dispatch).
    CreateExecution,
    /// Sending a signal.
    SendSignal,
    /// Reading pending signals.
    PendingSignals,
    /// Reading one execution.
    Execution,
    /// Taking an idempotency key.
    BeginIdempotent,
    /// Ending an execution (cancel, time-out).
    EndExecution,
    /// Anything else (cache reads, listings, dead letters, stats).
    Other,
}

/// Which commits a trap on [`Call::Commit`] fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// Any commit.
    Any,
    /// One that finishes a child invocation (a step's final commit).
    StepEnd,
    /// One that finishes the root invocation (the execution's end).
    RootEnd,
    /// One whose turns only hold or park (a workflow's turn).
    Turn,
}

impl CommitKind {
    fn matches(self, turns: &[TurnCommit]) -> bool {
        let finishes = |root: bool| {
            turns.iter().any(|t| {
                matches!(&t.disposition, TaskDisposition::Finish { execution, .. }
                    if execution.is_some() == root)
            })
        };
        match self {
            CommitKind::Any => true,
            CommitKind::StepEnd => finishes(false),
            CommitKind::RootEnd => finishes(true),
            CommitKind::Turn => turns.iter().all(|t| {
                matches!(
                    t.disposition,
                    TaskDisposition::Hold { .. } | TaskDisposition::Park { .. }
                )
            }),
        }
    }
}

/// One armed fault.
#[derive(Debug, Clone, Copy)]
pub struct Trap {
    /// The call it fires on.
    pub call: Call,
    /// For [`Call::Commit`]: which commits.
    pub commit: CommitKind,
    /// Skip this many matching calls first.
    pub skip: u32,
    /// The call reaches storage and is applied; only its reply is lost.
    pub landed: bool,
    /// The store goes down right after (every call fails until
    /// [`StoreFaults::up`]).
    pub then_down: bool,
    /// Only calls made at or after this (tokio) instant.
    pub not_before: Option<tokio::time::Instant>,
}

impl Trap {
    /// A trap on the first `call`, lost before it reaches storage.
    pub fn on(call: Call) -> Trap {
        Trap {
            call,
            commit: CommitKind::Any,
            skip: 0,
            landed: false,
            then_down: false,
            not_before: None,
        }
    }

    /// Only on calls made at or after `at`.
    pub fn not_before(mut self, at: tokio::time::Instant) -> Trap {
        self.not_before = Some(at);
        self
    }

    /// Only on commits of this kind.
    pub fn commit(mut self, kind: CommitKind) -> Trap {
        self.commit = kind;
        self
    }

    /// After this many matching calls went through.
    pub fn skip(mut self, n: u32) -> Trap {
        self.skip = n;
        self
    }

    /// The call is applied; its reply is lost.
    pub fn landed(mut self, landed: bool) -> Trap {
        self.landed = landed;
        self
    }

    /// The store goes down right after.
    pub fn then_down(mut self) -> Trap {
        self.then_down = true;
        self
    }
}

/// The faults armed on one backend, and counts of what they did.
#[derive(Debug, Default)]
pub struct StoreFaults {
    down: AtomicBool,
    traps: Mutex<Vec<Trap>>,
    /// Traps that fired.
    pub injected: AtomicU64,
    /// Traps that fired on a call that was applied anyway.
    pub landed: AtomicU64,
    /// Calls refused while the store was down.
    pub refused_while_down: AtomicU64,
}

impl StoreFaults {
    /// Arms `trap`.
    pub fn arm(&self, trap: Trap) {
        self.traps.lock().unwrap().push(trap);
    }

    /// Traps armed and not yet fired.
    pub fn armed(&self) -> usize {
        self.traps.lock().unwrap().len()
    }

    /// True if a trap on `call` is armed.
    pub fn armed_for(&self, call: Call) -> bool {
        self.traps.lock().unwrap().iter().any(|t| t.call == call)
    }

    /// Every call fails from now on (a database that went away).
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Calls go through again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// True while the store is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Traps fired so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Takes the trap `call` (with its turns, for a commit) fires, if any;
    /// nothing while the store is down.
    pub fn take(&self, call: Call, turns: Option<&[TurnCommit]>) -> Option<Trap> {
        if self.is_down() {
            return None;
        }
        let mut traps = self.traps.lock().unwrap();
        let now = tokio::time::Instant::now();
        let i = traps.iter().position(|t| {
            t.call == call
                && t.not_before.is_none_or(|at| now >= at)
                && turns.is_none_or(|turns| t.commit.matches(turns))
        })?;
        if traps[i].skip > 0 {
            traps[i].skip -= 1;
            return None;
        }
        Some(traps.remove(i))
    }

    /// Runs `op`, the storage call `call`, under the armed faults.
    pub async fn run<T>(
        &self,
        call: Call,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let trap = self.take(call, None);
        self.apply(call, trap, op).await
    }

    /// Runs `op`, the storage call `call`, with `trap` (from
    /// [`StoreFaults::take`]): refused while the store is down; failed by
    /// the trap, after being applied if the trap says it landed.
    pub async fn apply<T>(
        &self,
        call: Call,
        trap: Option<Trap>,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if self.is_down() {
            self.refused_while_down.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::unavailable(
                "connection refused: the database is down (injected)",
            ));
        }
        let Some(trap) = trap else {
            return op.await;
        };
        self.injected.fetch_add(1, Ordering::SeqCst);
        let applied = if trap.landed {
            self.landed.fetch_add(1, Ordering::SeqCst);
            format!("applied: {:?}", op.await.map(|_| ()))
        } else {
            "not applied".to_string()
        };
        if trap.then_down {
            self.down();
        }
        Err(StoreError::unavailable(format!(
            "connection lost during {call:?} (injected; {applied})"
        )))
    }
}
