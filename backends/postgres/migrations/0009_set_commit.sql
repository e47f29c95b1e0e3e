-- stent PostgreSQL schema, version 9: large commits written a set at a time.
--
-- stent_commit (migration 4) walks its turns one by one, running a fenced
-- update and an insert of events per turn inside PL/pgSQL. A commit of a
-- fan-out's children holds a hundred turns or more, and each of those
-- statements costs an executor start-up and a scan of the whole argument
-- arrays for the turn's own events (quadratic in the batch).
--
-- stent_commit_set takes the same arguments and makes the same writes with
-- the same errors, one statement per kind of write for the whole batch:
-- the spawned tasks, every fence, every event, the consumed inbox items,
-- the deliveries and the executions' outcomes. It takes independent turns
-- only: of distinct invocations (a second turn of an invocation fences on
-- what the first wrote), none delivering to another turn's invocation (a
-- delivery then a park leaves the parent ready at the park's time, the
-- other order at the delivery's). The caller sends other batches to
-- stent_commit.
--
-- Its result is the one of applying the turns in argument order:
-- * the task rows are locked first in invocation id order: l_ids names
--   every existing row the batch updates, its turns' and the parents it
--   wakes, so no two transactions wait for each other in a cycle;
-- * deliveries enter each parent's inbox in argument order;
-- * a parent woken by several deliveries is ready at the earliest of their
--   times, as one after the other would leave it;
-- * of two outcomes of one execution, the later turn's stands.
-- A lost lease names the first turn, in argument order, whose fence did not
-- match (SL001, 0-based index as the detail); missing inbox items the first
-- turn that lacks one (SL002).
CREATE OR REPLACE FUNCTION stent_commit_set(
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
    fenced uuid[];
    executions uuid[];
    consumed int8[];
    culprit int8;
BEGIN
    IF cardinality(l_ids) > 1 THEN
        PERFORM 1 FROM tasks
        WHERE invocation_id = ANY(l_ids)
        ORDER BY invocation_id
        FOR UPDATE;
    END IF;

    -- 1: spawns, in creation order, ahead of the fences: a step spawned
    -- leased and finished in this commit fences on the row made here.
    IF cardinality(s_turn) > 0 THEN
        WITH t AS (
            INSERT INTO tasks
                (invocation_id, execution_id, function, queue, priority, tags, state, run_at,
                 lease_owner, lease_until, epoch, attempts)
            SELECT s.id, s.exec, s.fn, s.queue, s.prio,
                   COALESCE(s_tags[s.tag_first:s.tag_last], '{}'), s.state, s.run_at,
                   s.owner, s.until - t_now[s.turn] + stent_clock(t_now[s.turn]), s.epoch,
                   s.attempts
            FROM UNNEST(s_turn, s_id, s_exec, s_fn, s_queue, s_prio, s_tag_first, s_tag_last,
                        s_state, s_run_at, s_owner, s_until, s_epoch, s_attempts)
                WITH ORDINALITY
                AS s(turn, id, exec, fn, queue, prio, tag_first, tag_last, state, run_at,
                     owner, until, epoch, attempts, ord)
            ORDER BY s.ord)
        INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at)
        SELECT s.id, 0, 'started', NULL, s.started, t_now[s.turn]
        FROM UNNEST(s_turn, s_id, s_started) AS s(turn, id, started);
    END IF;

    -- 2: every turn's disposition, which is also its fence. The SET lists
    -- are stent_commit's per kind; a column a kind leaves alone is set to
    -- its own value (an unchanged indexed value keeps the update HOT).
    WITH f AS (
        UPDATE tasks AS k
        SET state = CASE t.kind WHEN 'hold' THEN k.state
                                WHEN 'park' THEN CASE WHEN k.wake OR t.arg IS NOT NULL
                                                      THEN 'ready' ELSE 'waiting' END
                                WHEN 'retry' THEN 'ready'
                                ELSE 'done' END,
            run_at = CASE t.kind WHEN 'park' THEN CASE WHEN k.wake THEN t.now
                                                       WHEN t.arg IS NOT NULL THEN t.arg
                                                       ELSE k.run_at END
                                 WHEN 'retry' THEN t.arg
                                 ELSE k.run_at END,
            lease_owner = CASE WHEN t.kind = 'hold' THEN k.lease_owner END,
            lease_until = CASE WHEN t.kind = 'hold'
                               THEN t.arg - t.now + stent_clock(t.now) END,
            wake = CASE WHEN t.kind = 'hold' THEN k.wake ELSE FALSE END,
            retries = CASE WHEN t.kind = 'retry' THEN k.retries + 1 ELSE k.retries END,
            attempts = 0
        FROM UNNEST(t_inv, t_epoch, t_now, t_kind, t_arg) AS t(inv, epoch, now, kind, arg)
        WHERE k.invocation_id = t.inv AND k.state = 'leased' AND k.epoch = t.epoch
        RETURNING k.invocation_id, k.execution_id)
    SELECT array_agg(f.invocation_id), array_agg(f.execution_id) INTO fenced, executions FROM f;
    IF coalesce(cardinality(fenced), 0) < cardinality(t_inv) THEN
        SELECT min(t.ord) INTO culprit
        FROM UNNEST(t_inv) WITH ORDINALITY AS t(inv, ord)
        WHERE NOT t.inv = ANY(coalesce(fenced, '{}'));
        RAISE EXCEPTION 'lease lost' USING ERRCODE = 'SL001', DETAIL = (culprit - 1)::text;
    END IF;

    -- 3: the events.
    IF cardinality(e_turn) > 0 THEN
        INSERT INTO journal (invocation_id, seq, kind, call_key, payload, recorded_at)
        SELECT t_inv[e.turn], e.seq, e.kind, e.call_key, e.payload, t_now[e.turn]
        FROM UNNEST(e_turn, e_seq, e_kind, e_key, e_payload)
            AS e(turn, seq, kind, call_key, payload);
    END IF;

    -- 4: consumed inbox items, each from its own turn's inbox.
    IF cardinality(i_turn) > 0 THEN
        WITH d AS (
            DELETE FROM inbox
            USING UNNEST(i_turn, i_id) AS x(turn, id)
            WHERE inbox.invocation_id = t_inv[x.turn] AND inbox.id = x.id
            RETURNING inbox.id)
        SELECT array_agg(d.id) INTO consumed FROM d;
        IF coalesce(cardinality(consumed), 0) < cardinality(i_turn) THEN
            SELECT min(x.turn) INTO culprit
            FROM UNNEST(i_turn, i_id) AS x(turn, id)
            WHERE NOT x.id = ANY(coalesce(consumed, '{}'));
            RAISE EXCEPTION 'inbox items missing' USING ERRCODE = 'SL002',
                DETAIL = (culprit - 1)::text;
        END IF;
    END IF;

    -- 5: finished tasks' results to their parents, in order, waking them.
    IF cardinality(array_remove(t_parent, NULL)) > 0 THEN
        INSERT INTO inbox (invocation_id, event)
        SELECT d.parent, d.event
        FROM UNNEST(t_parent, t_delivery) WITH ORDINALITY AS d(parent, event, ord)
        WHERE d.parent IS NOT NULL
        ORDER BY d.ord;
        UPDATE tasks SET wake = TRUE,
            run_at = CASE state WHEN 'waiting' THEN w.now
                                WHEN 'ready' THEN LEAST(run_at, w.now)
                                ELSE run_at END,
            state = CASE state WHEN 'waiting' THEN 'ready' ELSE state END
        FROM (SELECT d.parent, min(d.now) AS now
              FROM UNNEST(t_parent, t_now) AS d(parent, now)
              WHERE d.parent IS NOT NULL
              GROUP BY d.parent) AS w
        WHERE invocation_id = w.parent AND state IN ('ready', 'leased', 'waiting');
    END IF;

    -- 6: the executions' outcomes; of two for one execution, the later.
    IF cardinality(array_remove(t_status, NULL)) > 0 THEN
        UPDATE executions AS x
        SET status = o.status, terminal_event = o.terminal, completed_at = o.now
        FROM (SELECT DISTINCT ON (f.execution) f.execution, t.status, t.terminal, t.now
              FROM UNNEST(t_inv, t_status, t_terminal, t_now) WITH ORDINALITY
                  AS t(inv, status, terminal, now, ord)
              JOIN UNNEST(fenced, executions) AS f(inv, execution) ON f.inv = t.inv
              WHERE t.status IS NOT NULL
              ORDER BY f.execution, t.ord DESC) AS o
        WHERE x.id = o.execution;
    END IF;
END;
$$;
