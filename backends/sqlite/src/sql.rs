//! Every SQL statement the backend runs. They are constants so that sqlx's
//! per-connection statement cache prepares each once; variable-length lists
//! (functions, queues, tags, ids, names) are bound as one JSON array and
//! expanded with `json_each`.

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
    (id, function, status, queue, priority, tags, created_at, started_at, deadline) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

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
    (execution_id, name, payload, consumed_by, created_at) \
    SELECT ?1, ?2, ?3, NULL, ?4 WHERE EXISTS (SELECT 1 FROM executions WHERE id = ?1) \
    RETURNING id";

// ------------------------------------------------------------------ claims

/// How many due tasks make a claim walk the claim-order index instead of
/// sorting the due tasks.
pub(crate) const MANY_DUE: i64 = 256;

/// ?1 now, ?2 cap: the number of due ready tasks, counted up to the cap.
pub(crate) const COUNT_DUE: &str = "SELECT COUNT(*) FROM ( \
    SELECT 1 FROM tasks INDEXED BY tasks_ready_due WHERE state = 'ready' AND run_at <= ?1 LIMIT ?2)";

/// The claim: leases the first `?7` eligible tasks in claim order and returns
/// them. ?1 worker, ?2 lease_until, ?3 now, ?4 functions (JSON), ?5 queues
/// (JSON or NULL), ?6 tags (JSON or NULL), ?7 limit. `$ready_index` picks how
/// the ready tasks are found (see the indexes in the migration); tasks whose
/// lease expired are few and found by state.
macro_rules! claim {
    ($ready_index:literal) => {
        concat!(
            "UPDATE tasks ",
            "SET state = 'leased', lease_owner = ?1, lease_until = ?2, ",
            "    epoch = epoch + 1, attempts = attempts + 1, wake = 0 ",
            "WHERE invocation_id IN ( ",
            "  SELECT invocation_id FROM ( ",
            "    SELECT invocation_id, priority, run_at, created FROM tasks INDEXED BY ",
            $ready_index,
            "    WHERE state = 'ready' AND run_at <= ?3 AND ",
            claim_filters!(),
            "    UNION ALL ",
            "    SELECT invocation_id, priority, run_at, created FROM tasks INDEXED BY tasks_leased ",
            "    WHERE state = 'leased' AND lease_until < ?3 AND ",
            claim_filters!(),
            "    ORDER BY priority DESC, run_at ASC, created ASC ",
            "    LIMIT ?7)) ",
            "RETURNING invocation_id, execution_id, function, epoch, attempts, priority, run_at, created"
        )
    };
}

macro_rules! claim_filters {
    () => {
        concat!(
            " function IN (SELECT value FROM json_each(?4)) ",
            " AND (?5 IS NULL OR queue IN (SELECT value FROM json_each(?5))) ",
            " AND (?6 IS NULL OR EXISTS ( ",
            "       SELECT 1 FROM json_each(tasks.tags) AS t ",
            "       WHERE t.value IN (SELECT value FROM json_each(?6)))) "
        )
    };
}

/// Claim when fewer than [`MANY_DUE`] tasks are due: take them by `run_at`, sort.
pub(crate) const CLAIM_FEW_DUE: &str = claim!("tasks_ready_due");
/// Claim when many tasks are due: walk in claim order, stop at the limit.
pub(crate) const CLAIM_MANY_DUE: &str = claim!("tasks_ready_order");

/// ?1 now, ?2 execution ids (JSON). The unary `+` keeps SQLite from using
/// the status index (which would scan every pending execution) instead of
/// looking the ids up.
pub(crate) const MARK_RUNNING: &str = "UPDATE executions \
    SET status = 'running', started_at = ?1 \
    WHERE id IN (SELECT value FROM json_each(?2)) AND +status = 'pending'";

pub(crate) const RENEW: &str = "UPDATE tasks SET lease_until = ?4 \
    WHERE invocation_id = ?1 AND state = 'leased' AND lease_owner = ?2 AND epoch = ?3";

// ------------------------------------------------------------------ commit

// Each disposition statement is also the fence: it matches only a leased task
// at the writer's epoch (?1 invocation, ?2 epoch) and returns its execution.

pub(crate) const HOLD: &str = "UPDATE tasks SET lease_until = ?3 \
    WHERE invocation_id = ?1 AND state = 'leased' AND epoch = ?2 \
    RETURNING execution_id";

/// ?3 now, ?4 run_at or NULL. A wake during the turn makes it ready now.
pub(crate) const PARK: &str = "UPDATE tasks \
    SET state = CASE WHEN wake = 1 OR ?4 IS NOT NULL THEN 'ready' ELSE 'waiting' END, \
        run_at = CASE WHEN wake = 1 THEN ?3 WHEN ?4 IS NOT NULL THEN ?4 ELSE run_at END, \
        lease_owner = NULL, lease_until = NULL, wake = 0 \
    WHERE invocation_id = ?1 AND state = 'leased' AND epoch = ?2 \
    RETURNING execution_id";

/// ?3 the final state ('done' or 'paused').
pub(crate) const RELEASE: &str = "UPDATE tasks \
    SET state = ?3, lease_owner = NULL, lease_until = NULL, wake = 0 \
    WHERE invocation_id = ?1 AND state = 'leased' AND epoch = ?2 \
    RETURNING execution_id";

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

pub(crate) const FINISH_EXECUTION: &str = "UPDATE executions \
    SET status = ?2, terminal_event = ?3, completed_at = ?4 WHERE id = ?1";

pub(crate) const PAUSE_EXECUTION: &str =
    "UPDATE executions SET status = 'paused', pause_report = ?2 WHERE id = ?1";

// ------------------------------------------------------------------ reads

pub(crate) const READ_JOURNAL: &str = "SELECT seq, kind, payload, recorded_at FROM journal \
    WHERE invocation_id = ?1 AND seq >= ?2 ORDER BY seq";

macro_rules! select_executions {
    ($rest:literal) => {
        concat!(
            "SELECT id, function, status, queue, priority, tags, created_at, ",
            "started_at, completed_at, deadline, terminal_event, pause_report ",
            "FROM executions ",
            $rest
        )
    };
}

pub(crate) const EXECUTION: &str = select_executions!("WHERE id = ?1");
pub(crate) const LIST_EXECUTIONS: &str =
    select_executions!("ORDER BY created_at DESC, id ASC LIMIT ?1 OFFSET ?2");
pub(crate) const LIST_EXECUTIONS_BY_STATUS: &str =
    select_executions!("WHERE status = ?3 ORDER BY created_at DESC, id ASC LIMIT ?1 OFFSET ?2");

pub(crate) const QUEUE_DEPTH_ALL: &str = "SELECT COUNT(*) FROM tasks WHERE state = 'ready'";
pub(crate) const QUEUE_DEPTH: &str =
    "SELECT COUNT(*) FROM tasks WHERE state = 'ready' AND queue = ?1";

pub(crate) const INBOX: &str = "SELECT id, event FROM inbox WHERE invocation_id = ?1 ORDER BY id";

pub(crate) const PENDING_SIGNALS: &str = "SELECT id, name, payload FROM signals \
    WHERE execution_id = ?1 AND consumed_by IS NULL \
      AND name IN (SELECT value FROM json_each(?2)) \
    ORDER BY id";
