-- stent SQLite schema, version 5: the code version an execution runs on
-- (NULL: not pinned yet; the first worker with a code version to claim it
-- pins it). Workers with a code version claim only their versions' work.
ALTER TABLE executions ADD COLUMN code_version TEXT;
