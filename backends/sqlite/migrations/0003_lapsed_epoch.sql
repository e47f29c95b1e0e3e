-- stent SQLite schema, version 3: the epoch of the lapsed lease a claim
-- took over, so a worker that is alive can report that takeover as no
-- crash (it then does not count towards the crash-loop limit).
ALTER TABLE tasks ADD COLUMN lapsed_epoch INTEGER;
