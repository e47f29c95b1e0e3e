-- stent SQLite schema, version 3: the epoch of the lapsed lease a claim
-- took over, so a worker that is alive can report that takeover as no
-- crash (it then does not count towards the crash-loop limit); the last
-- failed attempt of a retried task; and the workers that announced
-- themselves.
ALTER TABLE tasks ADD COLUMN lapsed_epoch INTEGER;

-- The last failed attempt of a task that is retried: when, and why.
ALTER TABLE tasks ADD COLUMN last_failed_at INTEGER;
ALTER TABLE tasks ADD COLUMN last_error TEXT;

-- The workers that announced themselves: what each serves (JSON arrays;
-- NULL queues or tags: any), and until when it is presumed alive.
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    functions TEXT NOT NULL,
    queues TEXT,
    tags TEXT,
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
