-- stent PostgreSQL schema, version 8: a commit's fences checked in one
-- plain statement.
--
-- A commit of one or two plain turns is written as one statement generated
-- for its shape (shaped.rs in the Rust code) instead of a call of
-- stent_commit. Its fences are chained updates; it ends by calling this
-- function, which raises, unless the last fence matched, so that nothing
-- of the statement is kept. The error is stent_commit's own: SQLSTATE
-- SL001, with the 0-based index of the turn whose lease was lost as the
-- detail. VOLATILE (the default), so the planner never calls it ahead of
-- time.
CREATE OR REPLACE FUNCTION stent_lease_lost(turn int4) RETURNS int4 LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lease lost' USING ERRCODE = 'SL001', DETAIL = turn::text;
END;
$$;
