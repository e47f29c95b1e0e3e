-- stent PostgreSQL schema, version 4: no deadlocks, no false crash loops.
--
-- stent_commit (migration 3) again, with the same writes and the same
-- errors, taking the task rows a batch updates in invocation id order. A
-- group commit batches the turns of many callers, and a lease renewal
-- updates many rows at once: taken in their arrival order, two such
-- transactions could each hold a row the other waits for (PostgreSQL then
-- aborts one with a deadlock). Renewals, signals
-- and the ending, resuming or discarding of executions lock their task
-- rows in the same order (their statements are in the Rust code).
--
-- And `tasks.lapsed_epoch`: the epoch of the lapsed lease the last claim
-- took over, so a worker that is alive can report that takeover as no
-- crash (it then does not count towards the crash-loop limit). The last
-- failed attempt of a retried task, and the workers that announced
-- themselves, for operators.

ALTER TABLE tasks ADD COLUMN lapsed_epoch BIGINT;

-- The last failed attempt of a task that is retried: when, and why.
ALTER TABLE tasks ADD COLUMN last_failed_at BIGINT;
ALTER TABLE tasks ADD COLUMN last_error TEXT;

-- The workers that announced themselves: what each serves (NULL queues or
-- tags: any), and until when it is presumed alive.
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    functions TEXT[] NOT NULL,
    queues TEXT[],
    tags TEXT[],
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The clock leases are decided by, in milliseconds since the Unix epoch:
-- the server's (the start of the current statement), so that workers on
-- hosts whose clocks differ never see a live lease as expired; or, on a
-- connection opened with `stent.lease_clock=worker` (PostgresBuilder::
-- lease_clock), the time the caller passed in `caller_now`. Every lease
-- expiry is stored on this clock: the caller's `until` less its `now`,
-- from `stent_clock(now)`.
CREATE OR REPLACE FUNCTION stent_clock(caller_now int8) RETURNS int8
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('stent.lease_clock', true) = 'worker' THEN caller_now
                ELSE (EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::int8 END
$$;

-- The version-3 function takes one argument fewer; this one replaces it.
DROP FUNCTION IF EXISTS stent_commit(
    uuid[], int8[], int8[], text[], int8[], text[], bytea[], uuid[], bytea[],
    int4[], int8[], text[], bytea[], bytea[], int4[], int8[],
    int4[], uuid[], uuid[], text[], text[], int4[], text[], int4[], int4[], text[], int8[],
    text[], int8[], int8[], int4[], bytea[]);

-- l_ids: the task rows to lock before anything else, in id order (empty
-- when the caller ordered the turns so that their rows are reached in id
-- order anyway; see LockOrder in the Rust code).
CREATE FUNCTION stent_commit(
    t_inv uuid[], t_epoch int8[], t_now int8[], t_kind text[], t_arg int8[],
    t_status text[], t_terminal bytea[], t_parent uuid[], t_delivery bytea[],
    e_turn int4[], e_seq int8[], e_kind text[], e_key bytea[], e_payload bytea[],
    i_turn int4[], i_id int8[],
    s_turn int4[], s_id uuid[], s_exec uuid[], s_fn text[], s_queue text[], s_prio int4[],
    s_tags text[], s_tag_first int4[], s_tag_last int4[], s_state text[], s_run_at int8[],
    s_owner text[], s_until int8[], s_epoch int8[], s_attempts int4[], s_started bytea[],
    l_ids uuid[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i int;
    ex uuid;
    n int8;
    want int8;
BEGIN
    -- The task rows the batch updates (its turns' and the parents it
    -- wakes) are taken in one global order: invocation id. Every other
    -- statement that locks several task rows takes them in the same order,
    -- so two transactions never wait for each other in a cycle. The caller
    -- orders the turns so that the rows are reached in that order; where it
    -- cannot, it names them in l_ids and they are locked first.
    IF cardinality(l_ids) > 1 THEN
        PERFORM 1 FROM tasks
        WHERE invocation_id = ANY(l_ids)
        ORDER BY invocation_id
        FOR UPDATE;
    END IF;
    FOR i IN 1 .. coalesce(array_length(t_inv, 1), 0) LOOP
        -- 1: the disposition, which is also the fence.
        IF t_kind[i] = 'hold' THEN
            UPDATE tasks SET lease_until = t_arg[i] - t_now[i] + stent_clock(t_now[i]),
                             attempts = 0
            WHERE invocation_id = t_inv[i] AND state = 'leased' AND epoch = t_epoch[i]
            RETURNING execution_id INTO ex;
        ELSIF t_kind[i] = 'park' THEN
            UPDATE tasks
            SET state = CASE WHEN wake OR t_arg[i] IS NOT NULL THEN 'ready' ELSE 'waiting' END,
                run_at = CASE WHEN wake THEN t_now[i] WHEN t_arg[i] IS NOT NULL THEN t_arg[i]
                              ELSE run_at END,
                lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0
            WHERE invocation_id = t_inv[i] AND state = 'leased' AND epoch = t_epoch[i]
            RETURNING execution_id INTO ex;
        ELSIF t_kind[i] = 'retry' THEN
            UPDATE tasks
            SET state = 'ready', run_at = t_arg[i], retries = retries + 1,
                lease_owner = NULL, lease_until = NULL, wake = FALSE, attempts = 0
            WHERE invocation_id = t_inv[i] AND state = 'leased' AND epoch = t_epoch[i]
            RETURNING execution_id INTO ex;
        ELSE
            UPDATE tasks
            SET state = 'done', lease_owner = NULL, lease_until = NULL, wake = FALSE,
                attempts = 0
            WHERE invocation_id = t_inv[i] AND state = 'leased' AND epoch = t_epoch[i]
            RETURNING execution_id INTO ex;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'lease lost' USING ERRCODE = 'SL001', DETAIL = (i - 1)::text;
        END IF;

        -- 2: the events.
        IF i = ANY(e_turn) THEN
            INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at)
            SELECT t_inv[i], e.seq, e.kind, e.call_key, e.payload, t_now[i]
            FROM UNNEST(e_turn, e_seq, e_kind, e_key, e_payload)
                AS e(turn, seq, kind, call_key, payload)
            WHERE e.turn = i;
        END IF;

        -- 3: spawns, in creation order.
        IF i = ANY(s_turn) THEN
            WITH t AS (
                INSERT INTO tasks
                    (invocation_id, execution_id, function, queue, priority, tags, state, run_at,
                     lease_owner, lease_until, epoch, attempts)
                SELECT s.id, s.exec, s.fn, s.queue, s.prio,
                       COALESCE(s_tags[s.tag_first:s.tag_last], '{}'), s.state, s.run_at,
                       s.owner, s.until - t_now[i] + stent_clock(t_now[i]), s.epoch, s.attempts
                FROM UNNEST(s_turn, s_id, s_exec, s_fn, s_queue, s_prio, s_tag_first, s_tag_last,
                            s_state, s_run_at, s_owner, s_until, s_epoch, s_attempts)
                    WITH ORDINALITY
                    AS s(turn, id, exec, fn, queue, prio, tag_first, tag_last, state, run_at,
                         owner, until, epoch, attempts, ord)
                WHERE s.turn = i
                ORDER BY s.ord)
            INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at)
            SELECT s.id, 0, 'started', NULL, s.started, t_now[i]
            FROM UNNEST(s_turn, s_id, s_started) AS s(turn, id, started)
            WHERE s.turn = i;
        END IF;

        -- 4: consumed inbox items.
        IF i = ANY(i_turn) THEN
            SELECT COUNT(*) INTO want FROM UNNEST(i_turn) AS x(turn) WHERE x.turn = i;
            DELETE FROM inbox
            WHERE invocation_id = t_inv[i]
              AND id IN (SELECT x.id FROM UNNEST(i_turn, i_id) AS x(turn, id) WHERE x.turn = i);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> want THEN
                RAISE EXCEPTION 'inbox items missing' USING ERRCODE = 'SL002',
                    DETAIL = (i - 1)::text;
            END IF;
        END IF;

        -- 5: a finished task's result to its parent (waking it), and the
        -- execution's outcome.
        IF t_parent[i] IS NOT NULL THEN
            INSERT INTO inbox (invocation_id, event) VALUES (t_parent[i], t_delivery[i]);
            UPDATE tasks SET wake = TRUE,
                run_at = CASE state WHEN 'waiting' THEN t_now[i]
                                    WHEN 'ready' THEN LEAST(run_at, t_now[i])
                                    ELSE run_at END,
                state = CASE state WHEN 'waiting' THEN 'ready' ELSE state END
            WHERE invocation_id = t_parent[i] AND state IN ('ready', 'leased', 'waiting');
        END IF;
        IF t_status[i] IS NOT NULL THEN
            UPDATE executions
            SET status = t_status[i], terminal_event = t_terminal[i], completed_at = t_now[i]
            WHERE id = ex;
        END IF;
    END LOOP;
END;
$$;
