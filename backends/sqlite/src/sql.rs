//! Every SQL statement the backend runs. They are constants so that sqlx's
//! per-connection statement cache prepares each once; variable-length lists
//! (functions, queues, tags, ids, names) are bound as one JSON array and
//! expanded with `json_each`. The batched statements of a commit (many rows
//! at once) are built once, in a few sizes.

use std::sync::OnceLock;

// ------------------------------------------------------------------ transactions

/// Takes the write lock up front, so the busy timeout applies (a deferred
/// `BEGIN` that later upgrades fails at once when another process writes).
pub(crate) const BEGIN: &str = "BEGIN IMMEDIATE";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";

/// Each request of a group commit runs inside this savepoint, so that its
/// failure undoes its own writes only.
pub(crate) const SAVEPOINT: &str = "SAVEPOINT request";
pub(crate) const RELEASE_SAVEPOINT: &str = "RELEASE request";
pub(crate) const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO request";

// ------------------------------------------------------------------ inserts

pub(crate) const INSERT_EXECUTION: &str = "INSERT INTO executions \
    (id, function, status, queue, priority, tags, created_at, started_at, deadline, \
     code_version) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// `created` is the creation order, a counter kept in the table itself.
pub(crate) const INSERT_TASK: &str = "INSERT INTO tasks \
    (invocation_id, execution_id, function, queue, priority, tags, state, run_at, \
     lease_owner, lease_until, epoch, attempts, wake, created) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, \
            (SELECT IFNULL(MAX(created), 0) + 1 FROM tasks))";

pub(crate) const INSERT_EVENT: &str = "INSERT INTO journal \
    (invocation_id, seq, kind, call_key, payload, recorded_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

pub(crate) const INSERT_INBOX: &str = "INSERT INTO inbox (invocation_id, event) VALUES (?1, ?2)";

/// Inserts only if the execution exists; no row returned means it does not.
pub(crate) const INSERT_SIGNAL: &str = "INSERT INTO signals \
    (execution_id, name, payload, consumed_by, created_at, dedupe_key) \
    SELECT ?1, ?2, ?3, NULL, ?4, ?5 WHERE EXISTS (SELECT 1 FROM executions WHERE id = ?1 \
      AND status NOT IN ('completed', 'failed', 'timed_out', 'cancelled')) \
    RETURNING id";

/// The signal stored under a sender's key: ?1 execution, ?2 key.
pub(crate) const SIGNAL_BY_KEY: &str = "SELECT id, name, payload FROM signals \
    WHERE execution_id = ?1 AND dedupe_key = ?2";

// ------------------------------------------------------------------ claims

/// How many due tasks make a claim walk the claim-order index instead of
/// sorting the due tasks.
pub(crate) const MANY_DUE: i64 = 256;

/// ?1 now, ?2 cap: the number of due ready tasks, counted up to the cap.
pub(crate) const COUNT_DUE: &str = "SELECT COUNT(*) FROM ( \
    SELECT 1 FROM tasks INDEXED BY tasks_ready_due WHERE state = 'ready' AND run_at <= ?1 LIMIT ?2)";

/// The claimable tasks in claim order, at most `$limit`: ready ones due at
/// `$now` (found through `$ready_index`, see the indexes in the migrations)
/// and leased ones whose lease expired (few, found by state). `$functions`
/// is the function condition, the others are placeholders (see
/// [`claim_filters`]).
macro_rules! candidates {
    ($ready_index:literal, $now:literal, $functions:literal, $queues:literal, $tags:literal,
     $versions:literal, $limit:literal) => {
        concat!(
            "SELECT invocation_id, priority, run_at, created FROM ( ",
            "  SELECT invocation_id, priority, run_at, created FROM tasks INDEXED BY ",
            $ready_index,
            "  WHERE state = 'ready' AND run_at <= ",
            $now,
            "  AND ",
            claim_filters!($functions, $queues, $tags, $versions),
            "  UNION ALL ",
            "  SELECT invocation_id, priority, run_at, created FROM tasks INDEXED BY tasks_leased ",
            "  WHERE state = 'leased' AND lease_until < ",
            $now,
            "  AND ",
            claim_filters!($functions, $queues, $tags, $versions),
            "  ORDER BY priority DESC, run_at ASC, created ASC ",
            "  LIMIT ",
            $limit,
            ")"
        )
    };
}

/// The filters of a claim: the function condition, and the placeholders of
/// the queues (JSON list or NULL), tags (JSON list or NULL) and code
/// versions (JSON list or NULL; an execution not pinned yet matches any).
macro_rules! claim_filters {
    ($functions:literal, $queues:literal, $tags:literal, $versions:literal) => {
        concat!(
            " ",
            $functions,
            " AND (",
            $queues,
            " IS NULL OR queue IN (SELECT value FROM json_each(",
            $queues,
            "))) AND (",
            $tags,
            " IS NULL OR EXISTS ( ",
            "   SELECT 1 FROM json_each(tasks.tags) AS t ",
            "   WHERE t.value IN (SELECT value FROM json_each(",
            $tags,
            ")))) AND (",
            $versions,
            " IS NULL OR EXISTS ( ",
            "   SELECT 1 FROM executions AS e WHERE e.id = tasks.execution_id ",
            "   AND (e.code_version IS NULL OR e.code_version IN ",
            "        (SELECT value FROM json_each(",
            $versions,
            "))))) "
        )
    };
}

/// What a claim sets on each task it leases (?1 worker, ?2 lease_until).
macro_rules! lease_set {
    () => {
        concat!(
            "UPDATE tasks ",
            "SET state = 'leased', lease_owner = ?1, lease_until = ?2, ",
            "    epoch = epoch + 1, attempts = attempts + 1, wake = 0, ",
            "    lapsed_epoch = CASE WHEN state = 'leased' THEN epoch END "
        )
    };
}

/// What a claim returns for each task it leased (the order columns too:
/// RETURNING gives rows in no particular order).
macro_rules! lease_returning {
    () => {
        concat!(
            "RETURNING invocation_id, execution_id, function, epoch, attempts, retries, ",
            "priority, run_at, created, ",
            "(SELECT deadline FROM executions WHERE executions.id = tasks.execution_id) ",
            "AS deadline"
        )
    };
}

/// The claim without concurrency limits: leases the first `?7` eligible
/// tasks in claim order and returns them. ?1 worker, ?2 lease_until, ?3 now,
/// ?4 functions (JSON), ?5 queues (JSON or NULL), ?6 tags (JSON or NULL), ?7
/// limit, ?8 code versions (JSON or NULL).
macro_rules! claim {
    ($ready_index:literal) => {
        concat!(
            lease_set!(),
            "WHERE invocation_id IN (SELECT invocation_id FROM (",
            candidates!(
                $ready_index,
                "?3",
                "function IN (SELECT value FROM json_each(?4))",
                "?5",
                "?6",
                "?8",
                "?7"
            ),
            ")) ",
            lease_returning!()
        )
    };
}

/// Claim when fewer than [`MANY_DUE`] tasks are due: take them by `run_at`, sort.
pub(crate) const CLAIM_FEW_DUE: &str = claim!("tasks_ready_due");
/// Claim when many tasks are due: walk in claim order, stop at the limit.
pub(crate) const CLAIM_MANY_DUE: &str = claim!("tasks_ready_order");

// A claim with concurrency limits picks its tasks in steps (all inside the
// writer's transaction): count the live leases of the limited functions,
// take the candidates of the unlimited functions and the first few of each
// limited one, merge them in claim order, then lease the chosen ids.

/// ?1 now, ?2 limited functions (JSON): unexpired leases per function.
pub(crate) const ACTIVE_LEASES: &str = "SELECT function, COUNT(*) AS n \
    FROM tasks INDEXED BY tasks_leased \
    WHERE state = 'leased' AND lease_until >= ?1 \
      AND function IN (SELECT value FROM json_each(?2)) \
    GROUP BY function";

/// ?1 now, ?2 functions (JSON), ?3 queues, ?4 tags, ?5 limit, ?6 code
/// versions (JSON or NULL).
pub(crate) const CANDIDATES_FEW_DUE: &str = candidates!(
    "tasks_ready_due",
    "?1",
    "function IN (SELECT value FROM json_each(?2))",
    "?3",
    "?4",
    "?6",
    "?5"
);
/// As [`CANDIDATES_FEW_DUE`], walking the claim-order index.
pub(crate) const CANDIDATES_MANY_DUE: &str = candidates!(
    "tasks_ready_order",
    "?1",
    "function IN (SELECT value FROM json_each(?2))",
    "?3",
    "?4",
    "?6",
    "?5"
);
/// As [`CANDIDATES_FEW_DUE`] for the one function ?2 (a name, not a list):
/// walks that function's ready tasks in claim order.
pub(crate) const CANDIDATES_OF_FUNCTION: &str = candidates!(
    "tasks_ready_by_function",
    "?1",
    "function = ?2",
    "?3",
    "?4",
    "?6",
    "?5"
);

/// Leases the tasks whose ids are in ?3 (JSON). ?1 worker, ?2 lease_until.
pub(crate) const CLAIM_IDS: &str = concat!(
    lease_set!(),
    "WHERE invocation_id IN (SELECT value FROM json_each(?3)) ",
    lease_returning!()
);

/// ?1 now, ?2 execution ids (JSON). The unary `+` keeps SQLite from using
/// the status index (which would scan every pending execution) instead of
/// looking the ids up.
pub(crate) const MARK_RUNNING: &str = "UPDATE executions \
    SET status = 'running', started_at = ?1 \
    WHERE id IN (SELECT value FROM json_each(?2)) AND +status = 'pending'";

/// ?1 code version, ?2 execution ids (JSON): pins the executions a claim
/// took that are not pinned yet to the claiming worker's version.
pub(crate) const PIN_CODE_VERSION: &str = "UPDATE executions SET code_version = ?1 \
    WHERE id IN (SELECT value FROM json_each(?2)) AND code_version IS NULL";

pub(crate) const RENEW: &str = "UPDATE tasks SET lease_until = ?4 \
    WHERE invocation_id = ?1 AND state = 'leased' AND lease_owner = ?2 AND epoch = ?3";

// ------------------------------------------------------------------ commit

// The disposition statement is also the fence: it matches only a leased task
// at the writer's epoch and returns its execution (and what a dead letter
// records). It resets `attempts`: the lease holder got a turn through.

/// Most rows one batched statement takes ([`fence`], [`insert_executions`],
/// [`insert_tasks`], [`insert_events`], [`finish_executions`]); more take
/// several statements.
pub(crate) const MAX_ROWS: usize = 256;

/// The batched statements for `rows` rows (at most [`MAX_ROWS`]) have room
/// for the next power of two; the rows beyond `rows` are bound to NULL, which
/// no task or journal row matches and the inserts leave out. So each batched
/// statement has a handful of forms (1, 2, 4, ... [`MAX_ROWS`] rows), each
/// prepared once.
pub(crate) fn batch_size(rows: usize) -> usize {
    rows.clamp(1, MAX_ROWS).next_power_of_two()
}

/// The statement among `forms` (one per power of two, see [`batch_size`]) for
/// `rows` rows, built once by `make(size)`.
fn batched(
    forms: &'static OnceLock<Vec<String>>,
    rows: usize,
    make: fn(usize) -> String,
) -> &'static str {
    let forms = forms.get_or_init(|| {
        std::iter::successors(Some(1usize), |n| Some(n * 2))
            .take_while(|&n| n <= MAX_ROWS)
            .map(make)
            .collect()
    });
    &forms[batch_size(rows).trailing_zeros() as usize]
}

/// Created on the writer connection when it opens (temporary objects live
/// with their connection): a view whose inserts fail unless `expected`
/// and `changed` agree. See [`FENCE_GUARD`].
pub(crate) const CREATE_FENCE_GUARD: &str = "\
    CREATE TEMP VIEW IF NOT EXISTS stent_fence_guard (expected, changed) AS SELECT 0, 0; \
    CREATE TEMP TRIGGER IF NOT EXISTS stent_fence_guard_check \
    INSTEAD OF INSERT ON stent_fence_guard WHEN NEW.expected <> NEW.changed \
    BEGIN SELECT RAISE(ABORT, 'stent: a fenced task is no longer leased at its turn''s epoch'); \
    END";

/// Right after a [`fence`] statement: fails unless it changed `?` tasks,
/// that is unless every turn it fenced still holds its lease. Lets a
/// batched commit send a run's fence and the writes after it in one query
/// instead of reading the fence's rows first.
pub(crate) const FENCE_GUARD: &str =
    "INSERT INTO temp.stent_fence_guard (expected, changed) VALUES (?, changes())";

/// After a [`FENCE_GUARD`]: fails unless each of the `?` invocations in the
/// JSON array `?` is the root of its execution (its task's execution has
/// its id), so that a batched commit can record a finishing root's outcome
/// without reading the execution from its fence's row.
pub(crate) const ROOTS_GUARD: &str = "INSERT INTO temp.stent_fence_guard (expected, changed) \
    SELECT ?, COUNT(*) FROM tasks \
    WHERE invocation_id IN (SELECT value FROM json_each(?)) AND execution_id = invocation_id";

/// Values bound per row of [`fence`], [`insert_events`], [`insert_tasks`],
/// [`insert_executions`], [`finish_executions`].
pub(crate) const FENCE_COLUMNS: usize = 5;
pub(crate) const EVENT_COLUMNS: usize = 6;
pub(crate) const TASK_COLUMNS: usize = 13;
pub(crate) const EXECUTION_COLUMNS: usize = 10;
pub(crate) const FINISH_COLUMNS: usize = 4;

/// `size` rows of `columns` `?` placeholders: `(?, ?), (?, ?)`.
fn placeholders(size: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; size].join(", ")
}

/// Ends the turns of up to `size` tasks in one statement: the fence and the
/// disposition of each. Binds per row: invocation, epoch, disposition
/// (`hold`, `park`, `retry`, or the final state `done`, `paused`, `dead`),
/// now, and a time: `hold` the new lease expiry, `park` the timer (or NULL),
/// `retry` when to retry. Returns the rows it changed (in no particular
/// order): invocation, execution, and what a dead letter records. The
/// invocations must be distinct.
///
/// Per disposition (the values of the row, `f`):
/// - `hold` keeps the lease until `f.at`.
/// - `park` releases the lease; the task is ready at `f.at` if set, or
///   waits to be woken, and is ready at once if woken during the turn.
/// - `retry` releases the lease and counts a retry; the task is ready at
///   `f.at` even if woken during the turn.
/// - `done`, `paused` and `dead` release the lease and end in that state.
pub(crate) fn fence(rows: usize) -> &'static str {
    static FORMS: OnceLock<Vec<String>> = OnceLock::new();
    batched(&FORMS, rows, |size| {
        format!(
            "WITH f (inv, epoch, kind, now, at) AS (VALUES {}) \
             UPDATE tasks SET \
                 state = CASE f.kind \
                     WHEN 'hold' THEN tasks.state \
                     WHEN 'park' THEN CASE WHEN tasks.wake = 1 OR f.at IS NOT NULL \
                                           THEN 'ready' ELSE 'waiting' END \
                     WHEN 'retry' THEN 'ready' \
                     ELSE f.kind END, \
                 run_at = CASE f.kind \
                     WHEN 'park' THEN CASE WHEN tasks.wake = 1 THEN f.now \
                                           WHEN f.at IS NOT NULL THEN f.at \
                                           ELSE tasks.run_at END \
                     WHEN 'retry' THEN f.at \
                     ELSE tasks.run_at END, \
                 retries = CASE f.kind WHEN 'retry' THEN tasks.retries + 1 \
                                       ELSE tasks.retries END, \
                 lease_owner = CASE f.kind WHEN 'hold' THEN tasks.lease_owner END, \
                 lease_until = CASE f.kind WHEN 'hold' THEN f.at END, \
                 wake = CASE f.kind WHEN 'hold' THEN tasks.wake ELSE 0 END, \
                 attempts = 0 \
             FROM f \
             WHERE tasks.invocation_id = f.inv AND tasks.state = 'leased' \
               AND tasks.epoch = f.epoch \
             RETURNING invocation_id, execution_id, function, queue, retries",
            placeholders(size, FENCE_COLUMNS)
        )
    })
}

/// Inserts up to `size` executions; binds per row as [`INSERT_EXECUTION`].
pub(crate) fn insert_executions(rows: usize) -> &'static str {
    static FORMS: OnceLock<Vec<String>> = OnceLock::new();
    batched(&FORMS, rows, |size| {
        format!(
            "INSERT INTO executions \
             (id, function, status, queue, priority, tags, created_at, started_at, deadline, \
              code_version) \
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, \
                    column9, column10 \
             FROM (VALUES {}) WHERE column1 IS NOT NULL",
            placeholders(size, EXECUTION_COLUMNS)
        )
    })
}

/// Records the outcome of up to `size` executions (distinct); binds per row
/// as [`FINISH_EXECUTION`].
pub(crate) fn finish_executions(rows: usize) -> &'static str {
    static FORMS: OnceLock<Vec<String>> = OnceLock::new();
    batched(&FORMS, rows, |size| {
        format!(
            "WITH e (id, status, terminal_event, completed_at) AS (VALUES {}) \
             UPDATE executions \
             SET status = e.status, terminal_event = e.terminal_event, \
                 completed_at = e.completed_at \
             FROM e WHERE executions.id = e.id",
            placeholders(size, FINISH_COLUMNS)
        )
    })
}

/// Inserts up to `size` journal rows; binds per row as [`INSERT_EVENT`].
pub(crate) fn insert_events(rows: usize) -> &'static str {
    static FORMS: OnceLock<Vec<String>> = OnceLock::new();
    batched(&FORMS, rows, |size| {
        format!(
            "INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
             SELECT column1, column2, column3, column4, column5, column6 \
             FROM (VALUES {}) WHERE column1 IS NOT NULL",
            placeholders(size, EVENT_COLUMNS)
        )
    })
}

/// Inserts up to `size` tasks; binds per row as [`INSERT_TASK`], then the
/// row's position among those it inserts (1, 2, ...), which orders their
/// creation.
pub(crate) fn insert_tasks(rows: usize) -> &'static str {
    static FORMS: OnceLock<Vec<String>> = OnceLock::new();
    batched(&FORMS, rows, |size| {
        format!(
            "INSERT INTO tasks \
             (invocation_id, execution_id, function, queue, priority, tags, state, run_at, \
              lease_owner, lease_until, epoch, attempts, wake, created) \
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, \
                    column9, column10, column11, column12, 0, \
                    (SELECT IFNULL(MAX(created), 0) FROM tasks) + column13 \
             FROM (VALUES {}) WHERE column1 IS NOT NULL",
            placeholders(size, TASK_COLUMNS)
        )
    })
}

/// ?1 task, ?2 execution, ?3 function, ?4 queue, ?5 reason, ?6 retries, ?7 failed_at.
pub(crate) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters \
    (task_id, execution_id, function, queue, reason, retries, failed_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// ?1 call key, ?2 value, ?3 now. The first writer wins.
pub(crate) const CACHE_PUT: &str = "INSERT INTO cache (call_key, value, created_at) \
    VALUES (?1, ?2, ?3) ON CONFLICT (call_key) DO NOTHING";

/// ?1 key, ?2 owner, ?3 value. No row changed: the key is not the owner's.
pub(crate) const IDEMPOTENCY_DONE: &str = "UPDATE idempotency \
    SET state = 'done', value = ?3 WHERE key = ?1 AND owner = ?2";

/// ?1 key, ?2 owner.
pub(crate) const IDEMPOTENCY_RELEASE: &str =
    "DELETE FROM idempotency WHERE key = ?1 AND owner = ?2";

pub(crate) const CONSUME_INBOX: &str = "DELETE FROM inbox WHERE id = ?1 AND invocation_id = ?2";

pub(crate) const CONSUME_SIGNAL: &str = "UPDATE signals SET consumed_by = ?1 \
    WHERE id = ?2 AND execution_id = ?3 AND consumed_by IS NULL";

/// ?1 invocation, ?2 now.
pub(crate) const WAKE_TASK: &str = "UPDATE tasks \
    SET wake = 1, \
        run_at = CASE state WHEN 'waiting' THEN ?2 WHEN 'ready' THEN MIN(run_at, ?2) \
                            ELSE run_at END, \
        state = CASE state WHEN 'waiting' THEN 'ready' ELSE state END \
    WHERE invocation_id = ?1 AND state IN ('ready', 'leased', 'waiting')";

/// ?1 execution, ?2 now.
pub(crate) const WAKE_EXECUTION: &str = "UPDATE tasks \
    SET wake = 1, \
        run_at = CASE state WHEN 'waiting' THEN ?2 WHEN 'ready' THEN MIN(run_at, ?2) \
                            ELSE run_at END, \
        state = CASE state WHEN 'waiting' THEN 'ready' ELSE state END \
    WHERE execution_id = ?1 AND +state IN ('ready', 'leased', 'waiting')";

/// Appends an execution's ending event after the last event of its root
/// journal. ?1 root invocation, ?2 kind, ?3 event, ?4 now.
pub(crate) const APPEND_ENDING: &str = "INSERT INTO journal \
    (invocation_id, seq, kind, call_key, payload, recorded_at) \
    SELECT ?1, IFNULL(MAX(seq), -1) + 1, ?2, NULL, ?3, ?4 \
    FROM journal WHERE invocation_id = ?1";

pub(crate) const FINISH_EXECUTION: &str = "UPDATE executions \
    SET status = ?2, terminal_event = ?3, completed_at = ?4 WHERE id = ?1";

/// ?1 key, ?2 owner: takes the key if it is free.
pub(crate) const IDEMPOTENCY_TAKE: &str = "INSERT INTO idempotency (key, owner, state, value) \
    VALUES (?1, ?2, 'running', NULL) ON CONFLICT (key) DO NOTHING";

pub(crate) const IDEMPOTENCY_GET: &str =
    "SELECT owner, state, value FROM idempotency WHERE key = ?1";

pub(crate) const PAUSE_EXECUTION: &str =
    "UPDATE executions SET status = 'paused', pause_report = ?2 WHERE id = ?1";

// ------------------------------------------------------------------ ending executions

/// ?1 execution.
pub(crate) const EXECUTION_STATUS: &str = "SELECT status FROM executions WHERE id = ?1";

/// ?1 execution: running again, if it was paused.
pub(crate) const RESUME_EXECUTION: &str = "UPDATE executions \
    SET status = 'running', pause_report = NULL WHERE id = ?1 AND status = 'paused'";

/// ?1 execution, ?2 now: its paused tasks become runnable.
pub(crate) const RESUME_TASKS: &str = "UPDATE tasks \
    SET state = 'ready', run_at = ?2, attempts = 0, \
        lease_owner = NULL, lease_until = NULL, wake = 0 \
    WHERE execution_id = ?1 AND state = 'paused'";

/// ?1 execution: its tasks that are not done can never run again; their
/// leases are gone (renewals report them lost, commits are refused).
pub(crate) const CANCEL_TASKS: &str = "UPDATE tasks \
    SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, wake = 0 \
    WHERE execution_id = ?1 AND +state != 'done'";

/// ?1 execution: its dead letters (their tasks were cancelled with it).
pub(crate) const DELETE_DEAD_LETTERS_OF: &str = "DELETE FROM dead_letters WHERE execution_id = ?1";

/// ?1 execution: the idempotency keys its invocations were running (they
/// will never finish them), so that later callers run the body.
pub(crate) const RELEASE_IDEMPOTENCY_OF: &str = "DELETE FROM idempotency \
    WHERE state = 'running' \
      AND owner IN (SELECT invocation_id FROM tasks WHERE execution_id = ?1)";

// ------------------------------------------------------------------ cleanup

/// The executions a cleanup removes: ended before ?1.
macro_rules! old_executions {
    () => {
        concat!(
            "SELECT id FROM executions INDEXED BY executions_by_completed ",
            "WHERE completed_at < ?1 ",
            "AND status IN ('completed', 'failed', 'timed_out', 'cancelled')"
        )
    };
}

/// The invocations (tasks) of those executions.
macro_rules! old_invocations {
    () => {
        concat!(
            "SELECT invocation_id FROM tasks WHERE execution_id IN (",
            old_executions!(),
            ")"
        )
    };
}

pub(crate) const COUNT_OLD_EXECUTIONS: &str =
    concat!("SELECT COUNT(*) FROM (", old_executions!(), ")");
pub(crate) const COUNT_OLD_TASKS: &str = concat!(
    "SELECT COUNT(*) FROM tasks WHERE execution_id IN (",
    old_executions!(),
    ")"
);
pub(crate) const COUNT_OLD_EVENTS: &str = concat!(
    "SELECT COUNT(*) FROM journal WHERE invocation_id IN (",
    old_invocations!(),
    ")"
);
pub(crate) const DELETE_OLD_EVENTS: &str = concat!(
    "DELETE FROM journal WHERE invocation_id IN (",
    old_invocations!(),
    ")"
);
pub(crate) const DELETE_OLD_INBOX: &str = concat!(
    "DELETE FROM inbox WHERE invocation_id IN (",
    old_invocations!(),
    ")"
);
pub(crate) const DELETE_OLD_SIGNALS: &str = concat!(
    "DELETE FROM signals WHERE execution_id IN (",
    old_executions!(),
    ")"
);
pub(crate) const DELETE_OLD_DEAD_LETTERS: &str = concat!(
    "DELETE FROM dead_letters WHERE execution_id IN (",
    old_executions!(),
    ")"
);
pub(crate) const DELETE_OLD_FAILURES: &str = concat!(
    "DELETE FROM task_failures WHERE invocation_id IN \
     (SELECT invocation_id FROM tasks WHERE execution_id IN (",
    old_executions!(),
    "))"
);
pub(crate) const DELETE_OLD_TASKS: &str = concat!(
    "DELETE FROM tasks WHERE execution_id IN (",
    old_executions!(),
    ")"
);
pub(crate) const DELETE_OLD_EXECUTIONS: &str = concat!(
    "DELETE FROM executions WHERE id IN (",
    old_executions!(),
    ")"
);

// ------------------------------------------------------------------ dead letters

macro_rules! select_dead_letters {
    ($rest:literal) => {
        concat!(
            "SELECT task_id, execution_id, function, queue, reason, retries, failed_at ",
            "FROM dead_letters ",
            $rest
        )
    };
}

pub(crate) const LIST_DEAD_LETTERS: &str =
    select_dead_letters!("ORDER BY failed_at DESC, task_id ASC LIMIT ?1");
pub(crate) const DEAD_LETTER: &str = select_dead_letters!("WHERE task_id = ?1");

/// ?1 task. No row returned: there was no such dead letter.
pub(crate) const DELETE_DEAD_LETTER: &str =
    "DELETE FROM dead_letters WHERE task_id = ?1 RETURNING execution_id";

/// ?1 task, ?2 now, ?3 reset retries (0/1), ?4 new queue or NULL.
pub(crate) const REPLAY_TASK: &str = "UPDATE tasks \
    SET state = 'ready', run_at = ?2, attempts = 0, \
        retries = CASE WHEN ?3 THEN 0 ELSE retries END, \
        queue = IFNULL(?4, queue), \
        lease_owner = NULL, lease_until = NULL, wake = 0 \
    WHERE invocation_id = ?1 AND state = 'dead'";

/// ?1 execution, ?2 queue: the root task's routing is the execution's.
pub(crate) const SET_EXECUTION_QUEUE: &str = "UPDATE executions SET queue = ?2 WHERE id = ?1";

/// ?1 task.
pub(crate) const DISCARD_TASK: &str = "UPDATE tasks \
    SET state = 'done', lease_owner = NULL, lease_until = NULL, wake = 0, attempts = 0 \
    WHERE invocation_id = ?1 AND state = 'dead'";

// ------------------------------------------------------------------ reads

/// Unfinished executions per code version (NULL first), through the status
/// index: the cost grows with unfinished executions only.
pub(crate) const UNFINISHED_BY_VERSION: &str = "SELECT code_version, COUNT(*) AS n \
    FROM executions WHERE status IN ('pending', 'running', 'paused') \
    GROUP BY code_version ORDER BY code_version IS NOT NULL, code_version";

pub(crate) const READ_JOURNAL: &str = "SELECT seq, kind, payload, recorded_at FROM journal \
    WHERE invocation_id = ?1 AND seq >= ?2 ORDER BY seq";

macro_rules! select_executions {
    ($rest:literal) => {
        concat!(
            "SELECT id, function, status, queue, priority, tags, created_at, ",
            "started_at, completed_at, deadline, terminal_event, pause_report, code_version, ",
            "(SELECT IFNULL(SUM(retries), 0) FROM tasks ",
            " WHERE tasks.execution_id = executions.id) AS retries ",
            "FROM executions ",
            $rest
        )
    };
}

pub(crate) const EXECUTION: &str = select_executions!("WHERE id = ?1");
/// The start of a listing: conditions and order follow (see
/// `store::list_filtered`).
pub(crate) const SELECT_EXECUTIONS: &str = select_executions!("");

/// ?1 execution, ?2 kinds (JSON or NULL): the journals of its invocations,
/// in task creation order, each in seq order.
pub(crate) const READ_EXECUTION_JOURNAL: &str = "SELECT t.invocation_id, j.seq, j.kind, \
    j.payload, j.recorded_at \
    FROM tasks AS t INDEXED BY tasks_by_execution \
    JOIN journal AS j ON j.invocation_id = t.invocation_id \
    WHERE t.execution_id = ?1 \
      AND (?2 IS NULL OR j.kind IN (SELECT value FROM json_each(?2))) \
    ORDER BY t.created, j.seq";

pub(crate) const CACHE_GET: &str = "SELECT value FROM cache WHERE call_key = ?1";

pub(crate) const QUEUE_DEPTH_ALL: &str = "SELECT COUNT(*) FROM tasks WHERE state = 'ready'";
pub(crate) const QUEUE_DEPTH: &str =
    "SELECT COUNT(*) FROM tasks WHERE state = 'ready' AND queue = ?1";

pub(crate) const INBOX: &str = "SELECT id, event FROM inbox WHERE invocation_id = ?1 ORDER BY id";

pub(crate) const PENDING_SIGNALS: &str = "SELECT id, name, payload FROM signals \
    WHERE execution_id = ?1 AND consumed_by IS NULL \
      AND (json_array_length(?2) = 0 OR name IN (SELECT value FROM json_each(?2))) \
    ORDER BY id";

/// ?1 worker, ?2 functions, ?3 queues, ?4 tags (JSON arrays, NULL for
/// any), ?5 started_at, ?6 seen_at, ?7 expires_at.
pub(crate) const ANNOUNCE_WORKER: &str = "INSERT INTO workers \
    (worker_id, functions, queues, tags, started_at, seen_at, expires_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
    ON CONFLICT (worker_id) DO UPDATE SET functions = excluded.functions, \
      queues = excluded.queues, tags = excluded.tags, started_at = excluded.started_at, \
      seen_at = excluded.seen_at, expires_at = excluded.expires_at";

pub(crate) const RETIRE_WORKER: &str = "DELETE FROM workers WHERE worker_id = ?1";

pub(crate) const WORKERS: &str = "SELECT worker_id, functions, queues, tags, started_at, \
    seen_at, expires_at FROM workers ORDER BY worker_id";

/// ?1 invocation, ?2 epoch: a live worker's lapsed lease at ?2 was taken
/// over by the last claim: that claim is taken off the attempts, once.
pub(crate) const FORGIVE_TAKEOVER: &str = "UPDATE tasks \
    SET attempts = attempts - 1, lapsed_epoch = NULL \
    WHERE invocation_id = ?1 AND lapsed_epoch = ?2 AND attempts > 0";

/// ?1 invocation, ?2 when, ?3 why: the last failed attempt of a task that
/// is retried.
pub(crate) const RECORD_FAILURE: &str =
    "UPDATE tasks SET last_failed_at = ?2, last_error = ?3 WHERE invocation_id = ?1";

/// ?1 invocation, ?2 when, ?3 why, ?4 attempts kept: the failed attempt
/// (numbered by the task's retries, which the retry has counted), then the
/// oldest ones past the limit dropped.
pub(crate) const APPEND_FAILURE: &str = "INSERT OR REPLACE INTO task_failures     (invocation_id, attempt, failed_at, error)     SELECT invocation_id, retries, ?2, ?3 FROM tasks WHERE invocation_id = ?1";
pub(crate) const TRIM_FAILURES: &str = "DELETE FROM task_failures     WHERE invocation_id = ?1       AND attempt <= (SELECT retries FROM tasks WHERE invocation_id = ?1) - ?2";

/// ?1 invocation: its failed attempts, oldest first.
pub(crate) const TASK_FAILURES: &str = "SELECT attempt, failed_at, error FROM task_failures     WHERE invocation_id = ?1 ORDER BY attempt";
