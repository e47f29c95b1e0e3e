-- stent PostgreSQL schema, version 7: a signal's sender may give it a key;
-- a signal is stored once per execution and key, so a send whose reply was
-- lost can be sent again.
ALTER TABLE signals ADD COLUMN IF NOT EXISTS dedupe_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS signals_by_key ON signals (execution_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
