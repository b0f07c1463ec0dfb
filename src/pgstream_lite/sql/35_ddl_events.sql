-- pgstream-lite: a relation under a stream table is dropped (DROP TABLE / VIEW / SCHEMA ...
-- CASCADE, dbt's table materialization, `dbt seed --full-refresh`).
--
-- What the engine then shows, with or without the event trigger (see
-- docs/engines-lite-differences.md, "Dropped relations"):
--   - a stream table reading a dropped relation (table, view, another stream table's storage):
--     status 'ERROR', needs_reinit true; its refresh fails naming the relation by schema and
--     name (recorded at create: pgstream_lite.dependency_names) and says to create it again;
--   - a stream table whose storage table was dropped: its catalog row is deleted, with the
--     change capture only it used and its internal state tables.
-- Where the installing role may create an event trigger (a superuser), this happens inside the
-- DROP; otherwise the scheduler does it at its next tick (70_scheduler.sql, 40_refresh.sql), a
-- manual refresh raises the same error, and the monitoring views compute it on read.

-- The relations stream table p_pgs_id reads that no longer exist, with the names they had when
-- it was created (or '(oid N)' where none was recorded).
CREATE OR REPLACE FUNCTION pgstream_lite.dropped_sources(p_pgs_id bigint)
RETURNS TABLE (source_relid oid, source_type text, name text) LANGUAGE sql STABLE AS $$
    SELECT d.source_relid, d.source_type,
           coalesce(x.source_schema || '.' || x.source_name, '(oid ' || d.source_relid || ')')
      FROM pgstream.pgs_dependencies d
      LEFT JOIN pgstream_lite.dependency_names x
             ON x.pgs_id = d.pgs_id AND x.source_relid = d.source_relid
     WHERE d.pgs_id = p_pgs_id
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = d.source_relid)
$$;

-- `public.raw (table, oid 16385), public.up (stream table, oid 16401)`: the dropped relations
-- stream table p_pgs_id reads, for messages; NULL when there is none.
CREATE OR REPLACE FUNCTION pgstream_lite.dropped_sources_text(p_pgs_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('%s (%s, oid %s)', g.name, lower(replace(g.source_type, '_', ' ')),
                             g.source_relid), ', ' ORDER BY g.name, g.source_relid)
      FROM pgstream_lite.dropped_sources(p_pgs_id) g
$$;

-- Is the storage table p_relid of a stream table gone?
CREATE OR REPLACE FUNCTION pgstream_lite.storage_missing(p_relid oid)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_relid IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p_relid)
$$;

-- Does stream table p_pgs_id read a relation that no longer exists?
CREATE OR REPLACE FUNCTION pgstream_lite.reads_dropped(p_pgs_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pgstream.pgs_dependencies d
                    WHERE d.pgs_id = p_pgs_id
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                       WHERE c.oid = d.source_relid))
$$;

-- Why stream table p_pgs_id cannot be refreshed until it is created again (its storage table or
-- a relation it reads was dropped): the error its refresh raises, or NULL.
CREATE OR REPLACE FUNCTION pgstream_lite.st_problem(p_pgs_id bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    st pgstream.pgs_stream_tables;
    qname text;
    v_dropped text;
BEGIN
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    qname := st.pgs_schema || '.' || st.pgs_name;
    IF pgstream_lite.storage_missing(st.pgs_relid) THEN
        RETURN format('invalid argument: the storage table of stream table %s no longer exists; '
                      'drop the stream table and create it again: %s', qname,
                      format('SELECT pgstream.drop_stream_table(%L)', qname));
    END IF;
    v_dropped := pgstream_lite.dropped_sources_text(p_pgs_id);
    IF v_dropped IS NOT NULL THEN
        RETURN format('invalid argument: stream table %s reads a relation that was dropped: %s; '
                      'drop it and create it again: %s', qname, v_dropped,
                      format('SELECT pgstream.drop_stream_table(%L)', qname));
    END IF;
    RETURN NULL;
END;
$$;

-- Remove stream table p_pgs_id from the catalog once its storage table is gone (or about to go:
-- drop_stream_table): its row (dependencies, names, history and st_meta go with it), the change
-- capture of the sources no other stream table reads, and its internal state table. The storage
-- table itself is not touched. Stream tables reading it keep their dependency rows (they are
-- marked by the caller: see mark_readers).
CREATE OR REPLACE FUNCTION pgstream_lite.forget_stream_table(p_pgs_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_sources oid[];
    src oid;
BEGIN
    SELECT array_agg(d.source_relid) INTO v_sources
      FROM pgstream.pgs_dependencies d WHERE d.pgs_id = p_pgs_id;
    DELETE FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    FOREACH src IN ARRAY coalesce(v_sources, '{}') LOOP
        PERFORM pgstream_lite.release_capture(src, p_pgs_id);
    END LOOP;
    -- the AGG path's group state (45_delta.sql); normally dropped with its st_meta row already
    EXECUTE format('DROP TABLE IF EXISTS pgstream_lite.%I', '__pgs_agg_' || p_pgs_id);
END;
$$;

-- Mark every stream table reading one of p_relids (dropped relations): status ERROR and
-- needs_reinit, so that the scheduler attempts no refresh of it until it is created again.
-- A row another transaction holds (a refresh running right now) is skipped rather than waited
-- for: waiting inside a DROP could deadlock with that refresh; the refresh then fails on the
-- missing relation and the scheduler marks it. Returns the number of tables marked.
CREATE OR REPLACE FUNCTION pgstream_lite.mark_readers(p_relids oid[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH todo AS (
        SELECT s.pgs_id FROM pgstream.pgs_stream_tables s
         WHERE s.pgs_id IN (SELECT d.pgs_id FROM pgstream.pgs_dependencies d
                             WHERE d.source_relid = ANY (p_relids))
           AND (s.status <> 'ERROR' OR NOT s.needs_reinit)
         FOR UPDATE SKIP LOCKED)
    UPDATE pgstream.pgs_stream_tables s
       SET status = 'ERROR', needs_reinit = true, updated_at = now()
      FROM todo WHERE s.pgs_id = todo.pgs_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- What a DROP of the relations p_relids means to the engine: stream tables whose storage table
-- is among them are removed from the catalog (as pg_stream and pg_trickle do), and those reading
-- one of them are marked (mark_readers). Rows held by another transaction are skipped (see
-- mark_readers). Returns (removed, marked).
CREATE OR REPLACE FUNCTION pgstream_lite.handle_dropped_relations(p_relids oid[],
                                                                  OUT removed integer,
                                                                  OUT marked integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    removed := 0;
    FOR v_id IN SELECT s.pgs_id FROM pgstream.pgs_stream_tables s
                 WHERE s.pgs_relid = ANY (p_relids)
                 ORDER BY s.pgs_id FOR UPDATE SKIP LOCKED LOOP
        PERFORM pgstream_lite.forget_stream_table(v_id);
        removed := removed + 1;
    END LOOP;
    marked := pgstream_lite.mark_readers(p_relids);
END;
$$;

-- The sql_drop event trigger's function. Cheap for DDL that drops no relation the engine knows
-- (one look at the dropped objects, two index probes), and never fails the user's DROP: an error
-- here is reported as a WARNING and the tables are left unmarked (the scheduler and refreshes
-- then find the missing relation themselves). SECURITY DEFINER: the role dropping a source
-- need not have rights on the engine's catalog.
CREATE OR REPLACE FUNCTION pgstream_lite.on_sql_drop()
RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relids oid[];
    v_res record;
BEGIN
    SELECT array_agg(o.objid) INTO v_relids
      FROM pg_catalog.pg_event_trigger_dropped_objects() o
     WHERE o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND o.objsubid = 0
       AND o.object_type IN ('table', 'view', 'materialized view', 'foreign table');
    IF v_relids IS NULL
       -- the engine's catalog was dropped (an uninstall under way): nothing to mark
       OR pg_catalog.to_regclass('pgstream.pgs_dependencies') IS NULL
       OR pg_catalog.to_regclass('pgstream.pgs_stream_tables') IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        IF EXISTS (SELECT 1 FROM pgstream.pgs_dependencies d WHERE d.source_relid = ANY (v_relids))
           OR EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables s
                       WHERE s.pgs_relid = ANY (v_relids)) THEN
            v_res := pgstream_lite.handle_dropped_relations(v_relids);
        END IF;
    EXCEPTION WHEN others THEN
        RAISE WARNING 'pgstream-lite: the stream tables over the dropped relation(s) were not '
                      'marked: %', SQLERRM
            USING HINT = 'Their refreshes fail until they are created again.';
    END;
END;
$$;

-- The event trigger itself: only a superuser may create one (PostgreSQL 14 to 18). An install by
-- another role goes on without it; pgstream_lite.engine.drop_event_trigger records which.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e
                    WHERE e.evtname = 'pgstream_lite_sql_drop') THEN
        BEGIN
            CREATE EVENT TRIGGER pgstream_lite_sql_drop ON sql_drop
                EXECUTE FUNCTION pgstream_lite.on_sql_drop();
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END IF;
END;
$$;

-- Is the sql_drop event trigger installed and enabled in this database?
CREATE OR REPLACE FUNCTION pgstream_lite.drop_event_trigger_installed()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e
                    WHERE e.evtname = 'pgstream_lite_sql_drop' AND e.evtenabled <> 'D')
$$;
