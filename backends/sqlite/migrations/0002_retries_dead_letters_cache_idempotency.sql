-- stent SQLite schema, version 2: retries, dead letters, the call cache,
-- idempotency keys, ended (cancelled) tasks and retention cleanup.

-- tasks gains `retries` and the states 'dead' (dead-lettered) and 'cancelled'
-- (its execution was ended). SQLite cannot change a CHECK constraint in
-- place, so the table is rebuilt (this migration runs in one transaction).
CREATE TABLE tasks_v2 (
    invocation_id TEXT    NOT NULL PRIMARY KEY,
    execution_id  TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    tags          TEXT    NOT NULL,
    state         TEXT    NOT NULL
        CHECK (state IN ('ready', 'leased', 'waiting', 'done', 'paused', 'dead', 'cancelled')),
    run_at        INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER,
    epoch         INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    retries       INTEGER NOT NULL DEFAULT 0,
    wake          INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);
INSERT INTO tasks_v2
    (invocation_id, execution_id, function, queue, priority, tags, state, run_at,
     lease_owner, lease_until, epoch, attempts, retries, wake, created)
SELECT invocation_id, execution_id, function, queue, priority, tags, state, run_at,
       lease_owner, lease_until, epoch, attempts, 0, wake, created
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v2 RENAME TO tasks;

-- The indexes of version 1 (dropped with the old table), unchanged.
CREATE INDEX tasks_ready_order ON tasks (priority DESC, run_at, created) WHERE state = 'ready';
CREATE INDEX tasks_ready_due ON tasks (run_at) WHERE state = 'ready';
CREATE INDEX tasks_leased ON tasks (lease_until) WHERE state = 'leased';
CREATE INDEX tasks_by_execution ON tasks (execution_id, created);
CREATE UNIQUE INDEX tasks_by_created ON tasks (created);
-- Claims of a function with a concurrency limit take its first few ready
-- tasks in claim order.
CREATE INDEX tasks_ready_by_function ON tasks (function, priority DESC, run_at, created)
    WHERE state = 'ready';

-- Tasks suspended after running out of attempts (their task is in state
-- 'dead' until the dead letter is replayed or discarded).
CREATE TABLE dead_letters (
    task_id      TEXT    NOT NULL PRIMARY KEY,
    execution_id TEXT    NOT NULL,
    function     TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    retries      INTEGER NOT NULL,
    failed_at    INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_failed ON dead_letters (failed_at DESC, task_id);
CREATE INDEX dead_letters_by_execution ON dead_letters (execution_id);

-- Results shared across executions by call key; the first writer wins.
CREATE TABLE cache (
    call_key   BLOB    NOT NULL PRIMARY KEY,
    value      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- At-most-once bodies across executions: the invocation running the body
-- under `key`, then its result.
CREATE TABLE idempotency (
    key   TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    value BLOB
);
-- Ending an execution frees the keys its invocations were running.
CREATE INDEX idempotency_by_owner ON idempotency (owner) WHERE state = 'running';

-- Retention cleanup finds ended executions by completion time.
CREATE INDEX executions_by_completed ON executions (completed_at)
    WHERE completed_at IS NOT NULL;
