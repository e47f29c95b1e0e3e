-- stent PostgreSQL schema, version 1. See the stent-postgres crate docs for
-- the meaning of every column. Table names are unqualified: they are created
-- in the first schema of the connection's search_path (the backend's schema).
-- Ids are UUIDs, times are Unix milliseconds (BIGINT), payloads are opaque
-- BYTEA the backend never decodes.

CREATE TABLE executions (
    id             UUID    NOT NULL PRIMARY KEY,
    function       TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN
        ('pending', 'running', 'completed', 'failed', 'timed_out', 'cancelled', 'paused')),
    queue          TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    tags           TEXT[]  NOT NULL,
    created_at     BIGINT  NOT NULL,
    started_at     BIGINT,
    completed_at   BIGINT,
    deadline       BIGINT,
    terminal_event BYTEA,
    pause_report   TEXT
);
CREATE INDEX executions_by_created ON executions (created_at DESC, id);
CREATE INDEX executions_by_status ON executions (status, created_at DESC, id);
-- Retention cleanup finds ended executions by completion time.
CREATE INDEX executions_by_completed ON executions (completed_at)
    WHERE completed_at IS NOT NULL;

CREATE TABLE tasks (
    invocation_id UUID    NOT NULL PRIMARY KEY,
    execution_id  UUID    NOT NULL,
    function      TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    tags          TEXT[]  NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN
        ('ready', 'leased', 'waiting', 'done', 'paused', 'dead', 'cancelled')),
    run_at        BIGINT  NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    epoch         BIGINT  NOT NULL,
    attempts      INTEGER NOT NULL,
    retries       INTEGER NOT NULL DEFAULT 0,
    wake          BOOLEAN NOT NULL DEFAULT FALSE,
    -- Creation order: ties of priority and run_at are claimed oldest first.
    created       BIGINT  GENERATED ALWAYS AS IDENTITY
);
-- Claims walk the ready tasks in claim order, or take the due ones by run_at
-- and sort them, whichever the planner prefers; a function with a
-- concurrency limit walks its own ready tasks; expired and live leases are
-- found per function. Partial indexes: finished tasks, the bulk of the table
-- over time, are in none of them.
CREATE INDEX tasks_ready_order ON tasks (priority DESC, run_at, created) WHERE state = 'ready';
CREATE INDEX tasks_ready_due ON tasks (run_at) WHERE state = 'ready';
CREATE INDEX tasks_ready_by_function ON tasks (function, priority DESC, run_at, created)
    WHERE state = 'ready';
CREATE INDEX tasks_leased ON tasks (function, lease_until) WHERE state = 'leased';
CREATE INDEX tasks_by_execution ON tasks (execution_id, created);

CREATE TABLE journal (
    invocation_id UUID   NOT NULL,
    seq           BIGINT NOT NULL,
    kind          TEXT   NOT NULL,
    call_key      BYTEA,
    payload       BYTEA  NOT NULL,
    recorded_at   BIGINT NOT NULL,
    PRIMARY KEY (invocation_id, seq)
);

CREATE TABLE inbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invocation_id UUID   NOT NULL,
    event         BYTEA  NOT NULL
);
CREATE INDEX inbox_by_invocation ON inbox (invocation_id, id);

CREATE TABLE signals (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id UUID   NOT NULL,
    name         TEXT   NOT NULL,
    payload      BYTEA  NOT NULL,
    consumed_by  UUID,
    created_at   BIGINT NOT NULL
);
CREATE INDEX signals_pending ON signals (execution_id, name, id) WHERE consumed_by IS NULL;
CREATE INDEX signals_by_execution ON signals (execution_id);

-- Tasks suspended after running out of attempts (their task is in state
-- 'dead' until the dead letter is replayed or discarded).
CREATE TABLE dead_letters (
    task_id      UUID    NOT NULL PRIMARY KEY,
    execution_id UUID    NOT NULL,
    function     TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    retries      INTEGER NOT NULL,
    failed_at    BIGINT  NOT NULL
);
CREATE INDEX dead_letters_by_failed ON dead_letters (failed_at DESC, task_id);
CREATE INDEX dead_letters_by_execution ON dead_letters (execution_id);

-- Results shared across executions by call key; the first writer wins.
CREATE TABLE cache (
    call_key   BYTEA  NOT NULL PRIMARY KEY,
    value      BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

-- At-most-once bodies across executions: the invocation running the body
-- under `key`, then its result.
CREATE TABLE idempotency (
    key   TEXT  NOT NULL PRIMARY KEY,
    owner UUID  NOT NULL,
    state TEXT  NOT NULL CHECK (state IN ('running', 'done')),
    value BYTEA
);
-- Ending an execution frees the keys its invocations were running.
CREATE INDEX idempotency_by_owner ON idempotency (owner) WHERE state = 'running';
