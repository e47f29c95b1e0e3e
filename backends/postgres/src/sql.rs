//! Every SQL statement the backend runs. They are constants so that sqlx's
//! per-connection statement cache prepares each once. Variable-length lists
//! (functions, queues, tags, ids, events, spawned tasks) are bound as
//! PostgreSQL arrays and expanded with `= ANY(...)` or `UNNEST(...)`, so a
//! batch of any size is one statement.

// ------------------------------------------------------------------ locks

/// The first key of the transaction-level advisory locks that serialize
/// claims of a function with a concurrency limit ("STEN"); the second is a
/// hash of the schema and the function name.
pub(crate) const LIMIT_LOCK_CLASS: i32 = 0x5354_454E;

/// ?1 class, ?2 function: held until the claim's transaction ends, so two
/// claimers never both count the same free slot.
pub(crate) const LOCK_FUNCTION: &str = "SELECT pg_advisory_xact_lock($1::int4, \
    hashtext(COALESCE(current_schema(), '') || '/' || $2::text))";

// ------------------------------------------------------------------ executions

/// The execution row, its root task and the root's `Started` event, in one
/// statement. $1 execution id, $2 function, $3 status, $4 queue, $5 priority,
/// $6 tags, $7 created_at, $8 started_at, $9 deadline, $10 root invocation,
/// $11 root function, $12 task state, $13 run_at, $14 lease owner, $15 lease
/// until, $16 epoch, $17 attempts, $18 started event, $19 code version.
pub(crate) const CREATE_EXECUTION: &str = "WITH e AS ( \
      INSERT INTO executions \
        (id, function, status, queue, priority, tags, created_at, started_at, deadline, \
         code_version) \
      VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::int4, $6::text[], $7::int8, \
              $8::int8, $9::int8, $19::text)), \
    t AS ( \
      INSERT INTO tasks \
        (invocation_id, execution_id, function, queue, priority, tags, state, run_at, \
         lease_owner, lease_until, epoch, attempts) \
      VALUES ($10::uuid, $1, $11::text, $4, $5, $6, $12::text, $13::int8, $14::text, \
              $15::int8 - $7 + stent_clock($7), $16::int8, $17::int4)) \
    INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
    VALUES ($10, 0, 'started', NULL, $18::bytea, $7)";

/// Child tasks and their `Started` events, in one statement, in creation
/// order. $1 now, $2 invocation ids, $3 execution ids, $4 functions, $5
/// queues, $6 priorities, $7 every task's tags one after the other, $8 and $9
/// each task's first and last index into $7 (1-based, inclusive; last <
/// first for none), $10 states, $11 run_at, $12 lease owners, $13 lease
/// untils, $14 epochs, $15 attempts, $16 started events.
pub(crate) const SPAWN: &str = "WITH t AS ( \
      INSERT INTO tasks \
        (invocation_id, execution_id, function, queue, priority, tags, state, run_at, \
         lease_owner, lease_until, epoch, attempts) \
      SELECT n.invocation_id, n.execution_id, n.function, n.queue, n.priority, \
             COALESCE(($7::text[])[n.tag_first:n.tag_last], '{}'), n.state, n.run_at, \
             n.lease_owner, n.lease_until - $1::int8 + stent_clock($1::int8), n.epoch, \
             n.attempts \
      FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int4[], $8::int4[], \
                  $9::int4[], $10::text[], $11::int8[], $12::text[], $13::int8[], \
                  $14::int8[], $15::int4[]) WITH ORDINALITY \
        AS n(invocation_id, execution_id, function, queue, priority, tag_first, tag_last, \
             state, run_at, lease_owner, lease_until, epoch, attempts, ord) \
      ORDER BY n.ord) \
    INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
    SELECT s.invocation_id, 0, 'started', NULL, s.payload, $1::int8 \
    FROM UNNEST($2, $16::bytea[]) AS s(invocation_id, payload)";

/// Executions with their root tasks and `Started` events, several in one
/// statement (group commit). $1..$15 the root tasks' columns as in
/// [`SPAWN`]'s $2..$16; $16 execution ids, $17 functions, $18 statuses, $19
/// created_at, $20 started_at, $21 deadlines, $22 code versions. An
/// execution's queue, priority and tags are its root task's.
pub(crate) const CREATE_EXECUTIONS: &str = "WITH e AS ( \
      INSERT INTO executions \
        (id, function, status, queue, priority, tags, created_at, started_at, deadline, \
         code_version) \
      SELECT x.id, x.function, x.status, x.queue, x.priority, \
             COALESCE(($6::text[])[x.tag_first:x.tag_last], '{}'), x.created_at, \
             x.started_at, x.deadline, x.code_version \
      FROM UNNEST($16::uuid[], $17::text[], $18::text[], $4::text[], $5::int4[], \
                  $7::int4[], $8::int4[], $19::int8[], $20::int8[], $21::int8[], \
                  $22::text[]) \
        AS x(id, function, status, queue, priority, tag_first, tag_last, created_at, \
             started_at, deadline, code_version)), \
    t AS ( \
      INSERT INTO tasks \
        (invocation_id, execution_id, function, queue, priority, tags, state, run_at, \
         lease_owner, lease_until, epoch, attempts) \
      SELECT n.invocation_id, n.execution_id, n.function, n.queue, n.priority, \
             COALESCE(($6::text[])[n.tag_first:n.tag_last], '{}'), n.state, n.run_at, \
             n.lease_owner, n.lease_until - n.created_at + stent_clock(n.created_at), \
             n.epoch, n.attempts \
      FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], $7::int4[], \
                  $8::int4[], $9::text[], $10::int8[], $11::text[], $12::int8[], \
                  $13::int8[], $14::int4[], $19::int8[]) WITH ORDINALITY \
        AS n(invocation_id, execution_id, function, queue, priority, tag_first, tag_last, \
             state, run_at, lease_owner, lease_until, epoch, attempts, created_at, ord) \
      ORDER BY n.ord) \
    INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
    SELECT s.invocation_id, 0, 'started', NULL, s.payload, s.created_at \
    FROM UNNEST($1, $15::bytea[], $19) AS s(invocation_id, payload, created_at)";

/// Unfinished executions per code version (NULL first).
pub(crate) const UNFINISHED_BY_VERSION: &str = "SELECT code_version, COUNT(*) AS n \
    FROM executions WHERE status IN ('pending', 'running', 'paused') \
    GROUP BY code_version ORDER BY code_version NULLS FIRST";

// ------------------------------------------------------------------ claims

/// The claimable tasks in claim order, at most `$5`, locked (`FOR UPDATE
/// SKIP LOCKED`: rows another claimer is taking are passed over, not waited
/// for): ready ones due at `$1`, and leased ones whose lease expired before
/// `$1`. $2 functions, $3 queues (NULL: any), $4 tags (NULL: any),
/// `$versions` code versions (NULL: any).
macro_rules! candidates {
    ($versions:literal) => {
        concat!(
            "WITH ready AS ( ",
            "  SELECT invocation_id, priority, run_at, created FROM tasks ",
            "  WHERE state = 'ready' AND run_at <= $1::int8 AND ",
            claim_filters!($versions),
            "  ORDER BY priority DESC, run_at, created LIMIT $5::int8 ",
            "  FOR UPDATE SKIP LOCKED), ",
            "expired AS ( ",
            "  SELECT invocation_id, priority, run_at, created FROM tasks ",
            "  WHERE state = 'leased' AND lease_until < stent_clock($1) AND ",
            claim_filters!($versions),
            "  ORDER BY priority DESC, run_at, created LIMIT $5 ",
            "  FOR UPDATE SKIP LOCKED), ",
            "candidates AS ( ",
            "  SELECT invocation_id, priority, run_at, created FROM ready ",
            "  UNION ALL ",
            "  SELECT invocation_id, priority, run_at, created FROM expired ",
            "  ORDER BY priority DESC, run_at, created LIMIT $5) "
        )
    };
}

/// The filters of a claim: functions ($2), queues ($3 or NULL), tags ($4
/// or NULL; a task matches if it carries at least one) and the code
/// versions of its execution (`$versions` or NULL; an execution not pinned
/// yet matches any).
macro_rules! claim_filters {
    ($versions:literal) => {
        concat!(
            " function = ANY($2::text[]) ",
            " AND ($3::text[] IS NULL OR queue = ANY($3::text[])) ",
            " AND ($4::text[] IS NULL OR tags && $4::text[]) ",
            " AND (",
            $versions,
            "::text[] IS NULL OR EXISTS (SELECT 1 FROM executions AS v ",
            "      WHERE v.id = tasks.execution_id AND (v.code_version IS NULL ",
            "      OR v.code_version = ANY(",
            $versions,
            "::text[])))) "
        )
    };
}

/// Leases the tasks of the CTE `chosen` and marks their executions running
/// ($1 now, `$worker`, `$until`), pinning those not pinned yet to the code
/// version `$pin` (NULL: none); returns them in claim order with their
/// execution's deadline.
macro_rules! lease_chosen {
    ($chosen:literal, $worker:literal, $until:literal, $pin:literal) => {
        concat!(
            "claimed AS ( ",
            "  UPDATE tasks AS t ",
            "  SET state = 'leased', lease_owner = ",
            $worker,
            "::text, lease_until = ",
            $until,
            "::int8 - $1::int8 + stent_clock($1::int8), ",
            "      epoch = t.epoch + 1, attempts = t.attempts + 1, wake = FALSE, ",
            "      lapsed_epoch = CASE WHEN t.state = 'leased' THEN t.epoch END ",
            "  WHERE t.invocation_id IN (",
            $chosen,
            ") ",
            "  RETURNING t.invocation_id, t.execution_id, t.function, t.epoch, t.attempts, ",
            "            t.retries, t.priority, t.run_at, t.created), ",
            "started AS ( ",
            "  UPDATE executions SET ",
            "    status = CASE WHEN status = 'pending' THEN 'running' ELSE status END, ",
            "    started_at = CASE WHEN status = 'pending' THEN $1 ELSE started_at END, ",
            "    code_version = COALESCE(code_version, ",
            $pin,
            "::text) ",
            "  WHERE id IN (SELECT execution_id FROM claimed) AND (status = 'pending' ",
            "    OR (code_version IS NULL AND ",
            $pin,
            "::text IS NOT NULL))) ",
            "SELECT c.invocation_id, c.execution_id, c.function, c.epoch, c.attempts, c.retries, ",
            "       e.deadline ",
            "FROM claimed AS c LEFT JOIN executions AS e ON e.id = c.execution_id ",
            "ORDER BY c.priority DESC, c.run_at, c.created"
        )
    };
}

/// The claim without concurrency limits, one statement: leases the first
/// `$5` claimable tasks. $1 now, $2 functions, $3 queues, $4 tags, $5 limit,
/// $6 worker, $7 lease_until, $8 code versions (NULL: any), $9 the code
/// version executions not pinned yet take (NULL: none).
pub(crate) const CLAIM: &str = concat!(
    candidates!("$8"),
    ", ",
    lease_chosen!("SELECT invocation_id FROM candidates", "$6", "$7", "$9")
);

/// The first `$5` claimable tasks, locked, in claim order (a claim with
/// concurrency limits picks from these). Parameters as [`CLAIM`]'s first
/// five; $6 code versions (NULL: any).
pub(crate) const CANDIDATES: &str = concat!(
    candidates!("$6"),
    "SELECT invocation_id, priority, run_at, created FROM candidates ",
    "ORDER BY priority DESC, run_at, created"
);

/// Leases the tasks $2 (already locked by this transaction). $1 now, $3
/// worker, $4 lease_until, $5 the code version executions not pinned yet
/// take (NULL: none).
pub(crate) const CLAIM_IDS: &str = concat!(
    "WITH ",
    lease_chosen!("SELECT UNNEST($2::uuid[])", "$3", "$4", "$5")
);

/// $1 now, $2 limited functions: unexpired leases per function.
pub(crate) const ACTIVE_LEASES: &str = "SELECT function, COUNT(*) AS n FROM tasks \
    WHERE state = 'leased' AND lease_until >= stent_clock($1::int8) \
      AND function = ANY($2::text[]) \
    GROUP BY function";

/// $1 invocations, $2 their epochs, $3 worker, $4 new lease_until, $5 now:
/// extends the leases still held and returns them. The rows are locked in
/// invocation id order, as every statement locking several task rows does
/// (migration 4), so a renewal and a commit never deadlock.
pub(crate) const RENEW: &str = "WITH held AS ( \
      SELECT t.invocation_id FROM tasks AS t \
      JOIN UNNEST($1::uuid[], $2::int8[]) AS l(invocation_id, epoch) \
        ON t.invocation_id = l.invocation_id AND t.epoch = l.epoch \
      WHERE t.state = 'leased' AND t.lease_owner = $3::text \
      ORDER BY t.invocation_id \
      FOR UPDATE OF t) \
    UPDATE tasks AS t SET lease_until = $4::int8 - $5::int8 + stent_clock($5::int8) \
    FROM held \
    WHERE t.invocation_id = held.invocation_id \
    RETURNING t.invocation_id";

/// $1 invocations: locks their task rows, in invocation id order (the one
/// order of migration 4), before a transaction updates several of them.
pub(crate) const LOCK_TASKS: &str = "SELECT 1 FROM tasks \
    WHERE invocation_id = ANY($1::uuid[]) ORDER BY invocation_id FOR UPDATE";

/// $1 execution: locks its task rows, in invocation id order, before the
/// execution row (commits lock a root's task before its execution).
pub(crate) const LOCK_EXECUTION_TASKS: &str = "SELECT 1 FROM tasks \
    WHERE execution_id = $1::uuid ORDER BY invocation_id FOR UPDATE";

// ------------------------------------------------------------------ commit

/// A turn's disposition and events, in one statement. The disposition update
/// is also the fence: it matches only a task leased at the writer's epoch,
/// and the events are appended only if it matched. Returns the task's
/// execution (and what a dead letter records); no row: the lease is lost.
///
/// $1 invocation, $2 epoch, $3 now, $4 seqs, $5 kinds, $6 call keys (NULL
/// elements for none), $7 payloads; `$update` sets the disposition and may
/// use $8. Each resets `attempts`: the lease holder got a turn through.
macro_rules! fenced {
    ($update:literal) => {
        fenced!($update, "")
    };
    // `$also`: more `name AS (…), ` clauses, run when the fence passed.
    ($update:literal, $also:literal) => {
        concat!(
            "WITH fenced AS ( ",
            $update,
            "  WHERE invocation_id = $1::uuid AND state = 'leased' AND epoch = $2::int8 ",
            "  RETURNING execution_id, function, queue, retries), ",
            "appended AS ( ",
            "  INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) ",
            "  SELECT $1, e.seq, e.kind, e.call_key, e.payload, $3::int8 ",
            "  FROM UNNEST($4::int8[], $5::text[], $6::bytea[], $7::bytea[]) ",
            "    AS e(seq, kind, call_key, payload) ",
            "  WHERE EXISTS (SELECT 1 FROM fenced)), ",
            $also,
            "done AS (SELECT 1) ",
            "SELECT execution_id, function, queue, retries FROM fenced"
        )
    };
}

/// $8 new lease_until.
pub(crate) const HOLD: &str = fenced!(
    "UPDATE tasks SET lease_until = $8::int8 - $3::int8 + stent_clock($3::int8), attempts = 0 "
);

/// $8 run_at or NULL. A wake during the turn makes it ready now.
pub(crate) const PARK: &str = fenced!(
    "UPDATE tasks \
     SET state = CASE WHEN wake OR $8::int8 IS NOT NULL THEN 'ready' ELSE 'waiting' END, \
         run_at = CASE WHEN wake THEN $3 WHEN $8 IS NOT NULL THEN $8 ELSE run_at END, \
         lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0 "
);

/// $8 the final state ('done', 'paused' or 'dead').
pub(crate) const RELEASE: &str = fenced!(
    "UPDATE tasks \
     SET state = $8::text, lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0 "
);

/// $8 run_at. A retry waits for its time even if woken during the turn.
/// $9 why the attempt failed, kept with the time as the last failure and
/// in the task's failures (numbered by its retries, the oldest past $10
/// dropped).
pub(crate) const RETRY: &str = fenced!(
    "UPDATE tasks \
     SET state = 'ready', run_at = $8::int8, retries = retries + 1, \
         lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0, \
         last_failed_at = $3, last_error = $9::text ",
    "failure AS ( \
       INSERT INTO task_failures (invocation_id, attempt, failed_at, error) \
       SELECT $1, retries, $3::int8, $9::text FROM fenced \
       ON CONFLICT (invocation_id, attempt) \
       DO UPDATE SET failed_at = EXCLUDED.failed_at, error = EXCLUDED.error), \
     trimmed AS ( \
       DELETE FROM task_failures \
       WHERE invocation_id = $1::uuid \
         AND attempt <= (SELECT retries FROM fenced) - $10::int8), "
);

/// A call of a commit function taking `stent_commit`'s 33 arguments.
macro_rules! commit_call {
    ($function:literal) => {
        concat!(
            "SELECT ",
            $function,
            "( \
            $1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[], \
            $7::bytea[], $8::uuid[], $9::bytea[], $10::int4[], $11::int8[], $12::text[], \
            $13::bytea[], $14::bytea[], $15::int4[], $16::int8[], $17::int4[], $18::uuid[], \
            $19::uuid[], $20::text[], $21::text[], $22::int4[], $23::text[], $24::int4[], \
            $25::int4[], $26::text[], $27::int8[], $28::text[], $29::int8[], $30::int8[], \
            $31::int4[], $32::bytea[], $33::uuid[])"
        )
    };
}

/// A batch of turns in one statement through the `stent_commit` function
/// (migration 2, which documents the parameters; migration 4 added $33, the
/// rows to lock first).
pub(crate) const COMMIT_FUNCTION: &str = commit_call!("stent_commit");

/// A batch of independent turns in one statement through the
/// `stent_commit_set` function (migration 9): the parameters of
/// [`COMMIT_FUNCTION`], one set-based write per kind instead of a loop over
/// the turns; $33 names every existing task row the batch updates.
pub(crate) const COMMIT_SET_FUNCTION: &str = commit_call!("stent_commit_set");

/// $1 invocation, $2 inbox ids.
pub(crate) const CONSUME_INBOX: &str =
    "DELETE FROM inbox WHERE invocation_id = $1::uuid AND id = ANY($2::int8[])";

/// $1 invocation, $2 execution, $3 signal ids.
pub(crate) const CONSUME_SIGNALS: &str = "UPDATE signals SET consumed_by = $1::uuid \
    WHERE execution_id = $2::uuid AND consumed_by IS NULL AND id = ANY($3::int8[])";

/// $1 call keys, $2 values, $3 now. An existing entry is kept (the first
/// writer wins, in the batch too).
pub(crate) const CACHE_PUT: &str = "INSERT INTO cache (call_key, value, created_at) \
    SELECT c.call_key, c.value, $3::int8 \
    FROM UNNEST($1::bytea[], $2::bytea[]) WITH ORDINALITY AS c(call_key, value, ord) \
    ORDER BY c.ord \
    ON CONFLICT (call_key) DO NOTHING";

/// $1 key, $2 owner, $3 value. No row changed: the key is not the owner's.
pub(crate) const IDEMPOTENCY_DONE: &str = "UPDATE idempotency \
    SET state = 'done', value = $3::bytea WHERE key = $1::text AND owner = $2::uuid";

/// $1 key, $2 owner.
pub(crate) const IDEMPOTENCY_RELEASE: &str =
    "DELETE FROM idempotency WHERE key = $1::text AND owner = $2::uuid";

/// $1 task, $2 execution, $3 function, $4 queue, $5 reason, $6 retries, $7 failed_at.
pub(crate) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters \
    (task_id, execution_id, function, queue, reason, retries, failed_at) \
    VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::int4, $7::int8)";

/// The wake-up of a task that got a delivery or a signal: a waiting task
/// becomes ready now, a ready one runs no later than now, a leased one is
/// flagged so that parking it makes it ready. `$now` is the time parameter.
macro_rules! wake {
    ($now:literal) => {
        concat!(
            "UPDATE tasks SET wake = TRUE, ",
            "  run_at = CASE state WHEN 'waiting' THEN ",
            $now,
            "::int8 WHEN 'ready' THEN LEAST(run_at, ",
            $now,
            "::int8) ELSE run_at END, ",
            "  state = CASE state WHEN 'waiting' THEN 'ready' ELSE state END "
        )
    };
}

/// A finished child's result into its parent's inbox, waking the parent.
/// $1 parent, $2 event, $3 now.
pub(crate) const DELIVER: &str = concat!(
    "WITH i AS (INSERT INTO inbox (invocation_id, event) VALUES ($1::uuid, $2::bytea)) ",
    wake!("$3"),
    "WHERE invocation_id = $1 AND state IN ('ready', 'leased', 'waiting')"
);

/// $1 execution, $2 status, $3 terminal event, $4 now.
pub(crate) const FINISH_EXECUTION: &str = "UPDATE executions \
    SET status = $2::text, terminal_event = $3::bytea, completed_at = $4::int8 \
    WHERE id = $1::uuid";

/// $1 execution, $2 report.
pub(crate) const PAUSE_EXECUTION: &str = "UPDATE executions \
    SET status = 'paused', pause_report = $2::text WHERE id = $1::uuid";

// ------------------------------------------------------------------ signals

/// Stores the signal if the execution exists and has not ended (no row
/// returned: it does not, or it has) and wakes the execution's tasks. $1
/// execution, $2 name, $3 payload, $4 now.
pub(crate) const SEND_SIGNAL: &str = concat!(
    "WITH s AS ( ",
    "  INSERT INTO signals (execution_id, name, payload, consumed_by, created_at, dedupe_key) ",
    "  SELECT $1::uuid, $2::text, $3::bytea, NULL, $4::int8, $5::text ",
    "  WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1 ",
    "    AND status NOT IN ('completed', 'failed', 'timed_out', 'cancelled')) ",
    "  RETURNING id), ",
    "o AS ( ",
    "  SELECT invocation_id FROM tasks ",
    "  WHERE execution_id = $1 AND state IN ('ready', 'leased', 'waiting') ",
    "    AND EXISTS (SELECT 1 FROM s) ",
    "  ORDER BY invocation_id FOR UPDATE), ",
    "w AS ( ",
    wake!("$4"),
    "  WHERE invocation_id IN (SELECT invocation_id FROM o) ",
    "    AND state IN ('ready', 'leased', 'waiting')) ",
    "SELECT id FROM s"
);

/// The signal stored under a sender's key: $1 execution, $2 key.
pub(crate) const SIGNAL_BY_KEY: &str = "SELECT id, name, payload FROM signals \
    WHERE execution_id = $1::uuid AND dedupe_key = $2::text";

// ------------------------------------------------------------------ idempotency

/// $1 key, $2 owner: takes the key if it is free; a row returned means taken.
pub(crate) const IDEMPOTENCY_TAKE: &str = "INSERT INTO idempotency (key, owner, state, value) \
    VALUES ($1::text, $2::uuid, 'running', NULL) ON CONFLICT (key) DO NOTHING RETURNING owner";

pub(crate) const IDEMPOTENCY_GET: &str =
    "SELECT owner, state, value FROM idempotency WHERE key = $1::text";

// ------------------------------------------------------------------ ending executions

/// $1 execution: its status, the row locked until the transaction ends.
pub(crate) const LOCK_EXECUTION: &str =
    "SELECT status FROM executions WHERE id = $1::uuid FOR UPDATE";

/// $1 execution: running again, if it was paused.
pub(crate) const RESUME_EXECUTION: &str = "UPDATE executions \
    SET status = 'running', pause_report = NULL WHERE id = $1::uuid AND status = 'paused'";

/// $1 execution, $2 now: its paused tasks become runnable.
pub(crate) const RESUME_TASKS: &str = "UPDATE tasks \
    SET state = 'ready', run_at = $2::int8, attempts = 0, \
        lease_owner = NULL, lease_until = NULL, wake = FALSE \
    WHERE execution_id = $1::uuid AND state = 'paused'";

/// $1 execution, $2 status, $3 terminal event, $4 now, $5 root invocation,
/// $6 the terminal event's kind: ends the execution and appends its ending
/// to the root journal; its tasks that are not done can never run again (their leases are gone:
/// renewals report them lost, commits are refused); its dead letters go
/// (their tasks were cancelled with it); the idempotency keys its
/// invocations were running are freed (they will never finish them), so
/// later callers run the body.
pub(crate) const END_EXECUTION: &str = "WITH e AS ( \
      UPDATE executions SET status = $2::text, terminal_event = $3::bytea, \
                            completed_at = $4::int8 \
      WHERE id = $1::uuid), \
    j AS ( \
      INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at) \
      SELECT $5::uuid, COALESCE(MAX(seq), -1) + 1, $6::text, NULL, $3, $4 \
      FROM journal WHERE invocation_id = $5), \
    t AS ( \
      UPDATE tasks SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, wake = FALSE \
      WHERE execution_id = $1 AND state <> 'done'), \
    d AS (DELETE FROM dead_letters WHERE execution_id = $1) \
    DELETE FROM idempotency \
    WHERE state = 'running' \
      AND owner IN (SELECT invocation_id FROM tasks WHERE execution_id = $1)";

// ------------------------------------------------------------------ cleanup

/// The executions a cleanup removes (ended before $1) and their invocations.
macro_rules! old {
    () => {
        concat!(
            "WITH old AS ( ",
            "  SELECT id FROM executions ",
            "  WHERE completed_at < $1::int8 ",
            "    AND status IN ('completed', 'failed', 'timed_out', 'cancelled')), ",
            "inv AS (SELECT invocation_id FROM tasks WHERE execution_id IN (SELECT id FROM old)) "
        )
    };
}

/// $1 before: what a cleanup would remove.
pub(crate) const COUNT_OLD: &str = concat!(
    old!(),
    "SELECT (SELECT COUNT(*) FROM old) AS executions, ",
    "       (SELECT COUNT(*) FROM inv) AS tasks, ",
    "       (SELECT COUNT(*) FROM journal ",
    "        WHERE invocation_id IN (SELECT invocation_id FROM inv)) AS events"
);

/// $1 before: removes the executions ended before it with everything of
/// theirs, in one statement, and returns the counts.
pub(crate) const DELETE_OLD: &str = concat!(
    old!(),
    ", j AS (DELETE FROM journal WHERE invocation_id IN (SELECT invocation_id FROM inv) ",
    "        RETURNING 1), ",
    "i AS (DELETE FROM inbox WHERE invocation_id IN (SELECT invocation_id FROM inv)), ",
    "s AS (DELETE FROM signals WHERE execution_id IN (SELECT id FROM old)), ",
    "d AS (DELETE FROM dead_letters WHERE execution_id IN (SELECT id FROM old)), ",
    "f AS (DELETE FROM task_failures WHERE invocation_id IN (SELECT invocation_id FROM inv)), ",
    "t AS (DELETE FROM tasks WHERE execution_id IN (SELECT id FROM old) RETURNING 1), ",
    "e AS (DELETE FROM executions WHERE id IN (SELECT id FROM old) RETURNING 1) ",
    "SELECT (SELECT COUNT(*) FROM e) AS executions, (SELECT COUNT(*) FROM t) AS tasks, ",
    "       (SELECT COUNT(*) FROM j) AS events"
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
    select_dead_letters!("ORDER BY failed_at DESC, task_id ASC LIMIT $1::int8");
pub(crate) const DEAD_LETTER: &str = select_dead_letters!("WHERE task_id = $1::uuid");

/// $1 task. No row returned: there was no such dead letter.
pub(crate) const DELETE_DEAD_LETTER: &str =
    "DELETE FROM dead_letters WHERE task_id = $1::uuid RETURNING execution_id";

/// $1 task, $2 now, $3 reset retries, $4 new queue or NULL.
pub(crate) const REPLAY_TASK: &str = "UPDATE tasks \
    SET state = 'ready', run_at = $2::int8, attempts = 0, \
        retries = CASE WHEN $3::bool THEN 0 ELSE retries END, \
        queue = COALESCE($4::text, queue), \
        lease_owner = NULL, lease_until = NULL, wake = FALSE \
    WHERE invocation_id = $1::uuid AND state = 'dead'";

/// $1 execution, $2 queue: the root task's routing is the execution's.
pub(crate) const SET_EXECUTION_QUEUE: &str =
    "UPDATE executions SET queue = $2::text WHERE id = $1::uuid";

/// $1 task.
pub(crate) const DISCARD_TASK: &str = "UPDATE tasks \
    SET state = 'done', lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0 \
    WHERE invocation_id = $1::uuid AND state = 'dead'";

// ------------------------------------------------------------------ reads

pub(crate) const READ_JOURNAL: &str = "SELECT seq, kind, payload, recorded_at FROM journal \
    WHERE invocation_id = $1::uuid AND seq >= $2::int8 ORDER BY seq";

/// The whole journals of the invocations $1 (read after a claim), grouped
/// by invocation, each in seq order.
pub(crate) const READ_JOURNALS: &str = "SELECT invocation_id, seq, kind, payload, recorded_at \
    FROM journal WHERE invocation_id = ANY($1::uuid[]) ORDER BY invocation_id, seq";

macro_rules! select_executions {
    ($rest:literal) => {
        concat!(
            "SELECT id, function, status, queue, priority, tags, created_at, ",
            "started_at, completed_at, deadline, terminal_event, pause_report, code_version, ",
            "(SELECT COALESCE(SUM(retries), 0) FROM tasks ",
            " WHERE tasks.execution_id = executions.id)::int8 AS retries ",
            "FROM executions ",
            $rest
        )
    };
}

pub(crate) const EXECUTION: &str = select_executions!("WHERE id = $1::uuid");
/// The executions among $1 (group commit: several callers' reads at once).
pub(crate) const EXECUTIONS_BY_ID: &str = select_executions!("WHERE id = ANY($1::uuid[])");
/// The start of a listing: conditions and order follow (see
/// `store::list_filtered`).
pub(crate) const SELECT_EXECUTIONS: &str = select_executions!("");

/// $1 execution, $2 kinds (NULL: all): the journals of its invocations, in
/// task creation order, each in seq order.
/// An execution's invocations in creation order ($1 execution). Read apart
/// from their journals ([`READ_JOURNALS_OF_KINDS`]): joined in one
/// statement, a planner without statistics (a fresh database, autovacuum
/// off) expects hundreds of tasks per execution and hashes the whole journal
/// table, 100+ ms per execution instead of 0.2 ms.
pub(crate) const READ_EXECUTION_TASKS: &str =
    "SELECT invocation_id FROM tasks WHERE execution_id = $1::uuid ORDER BY created";

/// The journal rows of the invocations $1, only those of the kinds $2 (NULL:
/// all), by invocation and seq.
pub(crate) const READ_JOURNALS_OF_KINDS: &str = "SELECT invocation_id, seq, kind, payload, \
    recorded_at FROM journal WHERE invocation_id = ANY($1::uuid[]) \
      AND ($2::text[] IS NULL OR kind = ANY($2::text[])) \
    ORDER BY invocation_id, seq";

pub(crate) const CACHE_GET: &str = "SELECT value FROM cache WHERE call_key = $1::bytea";

pub(crate) const QUEUE_DEPTH_ALL: &str = "SELECT COUNT(*) FROM tasks WHERE state = 'ready'";
pub(crate) const QUEUE_DEPTH: &str =
    "SELECT COUNT(*) FROM tasks WHERE state = 'ready' AND queue = $1::text";

pub(crate) const INBOX: &str =
    "SELECT id, event FROM inbox WHERE invocation_id = $1::uuid ORDER BY id";

pub(crate) const PENDING_SIGNALS: &str = "SELECT id, name, payload FROM signals \
    WHERE execution_id = $1::uuid AND consumed_by IS NULL \
      AND (cardinality($2::text[]) = 0 OR name = ANY($2::text[])) \
    ORDER BY id";

/// $1 worker, $2 functions, $3 queues, $4 tags (NULL for any), $5
/// started_at, $6 seen_at, $7 expires_at.
pub(crate) const ANNOUNCE_WORKER: &str = "INSERT INTO workers \
    (worker_id, functions, queues, tags, started_at, seen_at, expires_at) \
    VALUES ($1::text, $2::text[], $3::text[], $4::text[], $5::int8, $6::int8, $7::int8) \
    ON CONFLICT (worker_id) DO UPDATE SET functions = excluded.functions, \
      queues = excluded.queues, tags = excluded.tags, started_at = excluded.started_at, \
      seen_at = excluded.seen_at, expires_at = excluded.expires_at";

pub(crate) const RETIRE_WORKER: &str = "DELETE FROM workers WHERE worker_id = $1::text";

pub(crate) const WORKERS: &str = "SELECT worker_id, functions, queues, tags, started_at, \
    seen_at, expires_at FROM workers ORDER BY worker_id";

/// $1 invocation, $2 epoch: a live worker's lapsed lease at $2 was taken
/// over by the last claim: that claim is taken off the attempts, once.
pub(crate) const FORGIVE_TAKEOVER: &str = "UPDATE tasks \
    SET attempts = attempts - 1, lapsed_epoch = NULL \
    WHERE invocation_id = $1::uuid AND lapsed_epoch = $2::int8 AND attempts > 0";

/// $1 invocation: its failed attempts, oldest first.
pub(crate) const TASK_FAILURES: &str = "SELECT attempt, failed_at, error FROM task_failures \
    WHERE invocation_id = $1::uuid ORDER BY attempt";
