-- stent PostgreSQL schema, version 5: every failed attempt of a retried
-- task (the last 50 of each), not only the last one.
CREATE TABLE task_failures (
    invocation_id UUID NOT NULL,
    attempt INTEGER NOT NULL,
    failed_at BIGINT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (invocation_id, attempt)
);
