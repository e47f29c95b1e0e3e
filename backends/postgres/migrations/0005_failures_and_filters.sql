-- stent PostgreSQL schema, version 5: every failed attempt of a retried
-- task (the last 50 of each), not only the last one; indexes for listing
-- the executions of one function, queue or tag, newest first.
CREATE TABLE task_failures (
    invocation_id UUID NOT NULL,
    attempt INTEGER NOT NULL,
    failed_at BIGINT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (invocation_id, attempt)
);

CREATE INDEX executions_by_function ON executions (function, created_at DESC, id);
CREATE INDEX executions_by_queue ON executions (queue, created_at DESC, id);
CREATE INDEX executions_by_tags ON executions USING GIN (tags);
