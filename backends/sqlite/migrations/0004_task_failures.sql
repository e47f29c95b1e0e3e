-- stent SQLite schema, version 4: every failed attempt of a retried task
-- (the last 50 of each), not only the last one.
CREATE TABLE task_failures (
    invocation_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (invocation_id, attempt)
);
