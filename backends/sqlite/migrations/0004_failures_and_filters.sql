-- stent SQLite schema, version 4: every failed attempt of a retried task
-- (the last 50 of each), not only the last one; indexes for listing the
-- executions of one function or queue, newest first.
CREATE TABLE task_failures (
    invocation_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (invocation_id, attempt)
);

CREATE INDEX executions_by_function ON executions (function, created_at DESC, id);
CREATE INDEX executions_by_queue ON executions (queue, created_at DESC, id);
