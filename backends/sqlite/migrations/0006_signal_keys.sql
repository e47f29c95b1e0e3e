-- stent SQLite schema, version 6: a signal's sender may give it a key; a
-- signal is stored once per execution and key, so a send whose reply was
-- lost can be sent again.
ALTER TABLE signals ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX signals_by_key ON signals (execution_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
