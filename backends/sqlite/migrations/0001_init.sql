-- stent SQLite schema, version 1. See the stent-sqlite crate docs for the meaning
-- of every column. Ids are hyphenated lowercase UUID text, times are Unix
-- milliseconds, tags are JSON arrays of strings, payloads are opaque blobs.

CREATE TABLE executions (
    id             TEXT    NOT NULL PRIMARY KEY,
    function       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    queue          TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    tags           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    completed_at   INTEGER,
    deadline       INTEGER,
    terminal_event BLOB,
    pause_report   TEXT
);
CREATE INDEX executions_by_created ON executions (created_at DESC, id);
CREATE INDEX executions_by_status ON executions (status, created_at DESC, id);

CREATE TABLE tasks (
    invocation_id TEXT    NOT NULL PRIMARY KEY,
    execution_id  TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    tags          TEXT    NOT NULL,
    state         TEXT    NOT NULL
        CHECK (state IN ('ready', 'leased', 'waiting', 'done', 'paused')),
    run_at        INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER,
    epoch         INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    wake          INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);
-- Claims walk the ready tasks in claim order (tasks_ready_order) when many are
-- due, or take the due ones by run_at and sort them (tasks_ready_due) when few
-- are; expired leases are found by tasks_leased. Partial indexes: finished
-- tasks, the bulk of the table over time, are in none of them.
CREATE INDEX tasks_ready_order ON tasks (priority DESC, run_at, created) WHERE state = 'ready';
CREATE INDEX tasks_ready_due ON tasks (run_at) WHERE state = 'ready';
CREATE INDEX tasks_leased ON tasks (lease_until) WHERE state = 'leased';
CREATE INDEX tasks_by_execution ON tasks (execution_id);
CREATE UNIQUE INDEX tasks_by_created ON tasks (created);

CREATE TABLE journal (
    invocation_id TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    call_key      BLOB,
    payload       BLOB    NOT NULL,
    recorded_at   INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, seq)
) WITHOUT ROWID;

CREATE TABLE inbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    invocation_id TEXT    NOT NULL,
    event         BLOB    NOT NULL
);
CREATE INDEX inbox_by_invocation ON inbox (invocation_id, id);

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    consumed_by  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX signals_pending ON signals (execution_id, consumed_by, name, id);
