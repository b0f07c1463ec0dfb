-- pgstream-lite: refresh (FULL and DIFFERENTIAL).
--
-- Row identity: __pgs_row_id = pg_stream_hash(text of the row's stored columns, __pgs_count
-- included) for the first occurrence of a row, pg_stream_hash_multi(ARRAY[hash, occurrence]) for
-- the n-th identical one (bag semantics). A DIFFERENTIAL refresh takes the path planned for the
-- table's query (45_delta.sql): LINEAR, AGG or KEYED compute the change of the output from the
-- change buffers; RECOMPUTE re-runs the query, deletes the stored rows whose id is no longer
-- produced and inserts the produced rows whose id is not stored. Every path writes only rows
-- that really changed, so the counts are the true delta. With no captured change since the last
-- refresh (frontier = snapshot of the last refresh) it writes nothing (action NO_DATA).

CREATE OR REPLACE FUNCTION pgstream_lite.lock_key()
RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 1885566316 $$;  -- 'pgsl'

-- The second key of a stream table's advisory lock (pg_advisory_xact_lock(lock_key(), ...)),
-- from its bigint id: ids a multiple of 2^31 - 1 apart share a lock, so their refreshes take
-- turns (never wrong, only serialised); a cast to integer would fail past 2^31.
CREATE OR REPLACE FUNCTION pgstream_lite.st_lock_id(p_pgs_id bigint)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT (p_pgs_id % 2147483647)::integer $$;

-- SQL of the row id of the p_occ-th copy (p_occ > 1) of a row whose hash is p_hash (both SQL
-- expressions of integer types): the same value as pg_stream_hash_multi(ARRAY[hash, occ]::text[])
-- (integers' text never needs quoting in an array's text form), written so that the planner
-- inlines it: pg_stream_hash_multi's array-to-text cast is only STABLE, which kept it a SQL
-- function call, about 10 us a row in a refresh's probes (benchmarks/differential_refresh.py).
CREATE OR REPLACE FUNCTION pgstream_lite.occurrence_id_sql(p_hash text, p_occ text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format('hashtextextended(''{'' || (%s)::text || '','' || (%s)::text || ''}'', 1)',
                  p_hash, p_occ)
$$;

-- The settings a refresh pins (see refresh_st), restored afterwards.
CREATE OR REPLACE FUNCTION pgstream_lite.refresh_format_settings()
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output']
$$;

-- The columns a refresh writes after __pgs_row_id: the query's, then __pgs_count if it has one.
CREATE OR REPLACE FUNCTION pgstream_lite.stored_columns(m pgstream_lite.st_meta)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN m.count_query IS NULL THEN m.columns
                ELSE m.columns || '__pgs_count'::text END
$$;

-- SQL producing (__pgs_row_id, stored columns...) of p_inner, a query producing the stored
-- columns (NULL: the defining query, with __pgs_count if the table has one). p_inner may be
-- restricted to some groups: all copies of a row must be in or out together, so that
-- occurrence numbers match the whole query's.
CREATE OR REPLACE FUNCTION pgstream_lite.rows_sql_from(p_pgs_id bigint, p_inner text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    m pgstream_lite.st_meta;
    q_cols text;
    h_cols text;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    SELECT string_agg(format('q.%I', c), ', ' ORDER BY o),
           string_agg(format('h.%I', c), ', ' ORDER BY o)
      INTO q_cols, h_cols
      FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o);
    RETURN format(
        E'SELECT CASE WHEN h.__pgs_occ = 1 THEN h.__pgs_h\n'
        || E'            ELSE ' || pgstream_lite.occurrence_id_sql('h.__pgs_h', 'h.__pgs_occ') || E'\n'
        || E'       END AS __pgs_row_id, %s\n'
        || E'  FROM (SELECT g.*, row_number() OVER (PARTITION BY g.__pgs_h) AS __pgs_occ\n'
        || E'          FROM (SELECT %s, pgstream.pg_stream_hash(ROW(%s)::text) AS __pgs_h\n'
        || E'                  FROM (\n%s\n) q) g) h',
        h_cols, q_cols, q_cols, coalesce(p_inner, m.count_query, m.body));
END;
$$;

-- The same for a stream table's whole defining query.
CREATE OR REPLACE FUNCTION pgstream_lite.rows_sql(p_pgs_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT pgstream_lite.rows_sql_from(p_pgs_id, NULL)
$$;

-- Bounded history: keep the newest `pgstream_lite.history_rows` rows (default 1000) of a stream
-- table, deleting older ones; 0 or less keeps everything. Called after every recorded refresh.
CREATE OR REPLACE FUNCTION pgstream_lite.prune_history(p_pgs_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_keep integer := pgstream_lite.setting_int('pgstream_lite.history_rows', 1000);
BEGIN
    IF v_keep > 0 THEN
        DELETE FROM pgstream.pgs_refresh_history h
         WHERE h.pgs_id = p_pgs_id
           AND h.refresh_id <= (SELECT x.refresh_id FROM pgstream.pgs_refresh_history x
                                 WHERE x.pgs_id = p_pgs_id
                                 ORDER BY x.refresh_id DESC OFFSET v_keep LIMIT 1);
    END IF;
END;
$$;

-- Refresh one stream table now. Returns the action taken (FULL, DIFFERENTIAL, REINITIALIZE,
-- NO_DATA). Raises on failure (the caller's transaction decides what survives).
-- Generic plans: the refresh functions' own queries look up catalog rows by id, where a custom
-- plan is no better, and PostgreSQL would otherwise plan each of them again on its first five
-- runs in a session (about 1 ms of a 1-row refresh's 2.5). Statements run by EXECUTE (the
-- defining query, the deltas) are planned for their values whatever this setting.
CREATE OR REPLACE FUNCTION pgstream_lite.refresh_st(p_pgs_id bigint, p_initiated_by text)
RETURNS text LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    st pgstream.pgs_stream_tables;
    m pgstream_lite.st_meta;
    qname text;
    storage text;
    v_start timestamptz := clock_timestamp();
    v_action text;
    v_ins bigint := 0;
    v_del bigint := 0;
    v_snap text;
    v_old_path text;
    v_old_flag text;
    v_old_fmt text[];
    v_cols text;
    v_rows text;
    v_distributed boolean := false;
    v_problem text;
    v_marker record;
    v_secs bigint;
    v_owner text;
    v_old_role text;
    v_hint text;
    v_plan jsonb;
    v_path text;
    v_reason text;
    v_res record;
    v_refresh_id bigint;
BEGIN
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream table not found: %', p_pgs_id;
    END IF;
    qname := st.pgs_schema || '.' || st.pgs_name;
    IF NOT pg_try_advisory_xact_lock(pgstream_lite.lock_key(),
                                     pgstream_lite.st_lock_id(p_pgs_id)) THEN
        RAISE EXCEPTION 'refresh skipped: % — another refresh is already in progress', qname
            USING ERRCODE = 'lock_not_available';
    END IF;
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id FOR UPDATE;
    -- Each hint is SQL that runs as pasted (in the message, and as the error's HINT).
    IF st.status = 'SUSPENDED' THEN
        v_hint := format('SELECT pgstream.alter_stream_table(%L, status => %L)', qname, 'ACTIVE');
        RAISE EXCEPTION 'invalid argument: stream table % is suspended; resume it with %',
                        qname, v_hint USING HINT = v_hint;
    END IF;
    -- A dropped storage table or source (35_ddl_events.sql): the error names what is gone.
    v_problem := pgstream_lite.st_problem(p_pgs_id);
    IF v_problem IS NOT NULL THEN
        v_hint := format('SELECT pgstream.drop_stream_table(%L)', qname);
        IF pgstream_lite.storage_missing(st.pgs_relid) THEN
            RAISE EXCEPTION USING MESSAGE = v_problem, HINT = v_hint;
        END IF;
        -- undefined_table: the scheduler marks the table ERROR / needs_reinit (scheduled_refresh)
        RAISE EXCEPTION USING MESSAGE = v_problem, HINT = v_hint, ERRCODE = 'undefined_table';
    END IF;
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    storage := format('%I.%I', st.pgs_schema, st.pgs_name);

    -- The new frontier: everything visible in it is consumed by this refresh. Refreshes that
    -- read data take it inside the statement that reads the sources (see 45_delta.sql); this
    -- one, taken before has_changes, only stands when nothing changed (NO_DATA): a change
    -- committed after it is then not visible in it and is consumed next time.
    v_snap := pg_current_snapshot()::text;

    IF st.refresh_mode = 'FULL' THEN
        v_action := 'FULL';
        v_path := 'FULL';
        v_reason := 'refresh mode FULL';
    ELSIF st.needs_reinit THEN
        v_action := 'REINITIALIZE';
        v_path := 'FULL';
        v_reason := 'reinitialize';
        UPDATE pgstream_lite.st_meta x SET dvm = NULL WHERE x.pgs_id = p_pgs_id;
    ELSIF NOT st.is_populated THEN
        v_action := 'FULL';
        v_path := 'FULL';
        v_reason := 'not populated yet';
    ELSIF pgstream_lite.has_changes(p_pgs_id, st.frontier) THEN
        v_action := 'DIFFERENTIAL';
    ELSE
        v_action := 'NO_DATA';
        v_path := 'NO_DATA';
        v_reason := 'no change since the last refresh';
    END IF;

    IF v_action <> 'NO_DATA' THEN
        v_old_path := current_setting('search_path');
        v_old_flag := coalesce(current_setting('pgstream_lite.refreshing', true), '');
        SELECT array_agg(current_setting(g) ORDER BY o) INTO v_old_fmt
          FROM unnest(pgstream_lite.refresh_format_settings()) WITH ORDINALITY AS u(g, o);
        -- Row ids hash the rows' text: pin every setting that changes how values print (one
        -- statement: each PERFORM is an executor run).
        PERFORM set_config('search_path', m.search_path, true),
                set_config('pgstream_lite.refreshing', 'on', true),
                set_config('TimeZone', m.timezone, true),
                set_config('DateStyle', 'ISO, MDY', true),
                set_config('IntervalStyle', 'postgres', true),
                set_config('extra_float_digits', '1', true),
                set_config('bytea_output', 'hex', true);
        IF v_action = 'DIFFERENTIAL' THEN
            -- [citus hook] a stream table reading Citus tables: 80_citus.sql's plan (else NULL)
            v_plan := coalesce(pgstream_lite.citus_plan(p_pgs_id), pgstream_lite.st_plan(p_pgs_id));
            v_path := v_plan->>'path';
            v_reason := v_plan->>'reason';
            IF st.frontier->>'snapshot' IS NULL THEN
                v_path := 'RECOMPUTE';
                v_reason := 'no frontier';
            END IF;
        END IF;
        SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO v_cols
          FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o);
        -- The defining query runs with the rights of the storage table's owner, whoever refreshes
        -- (e.g. a superuser scheduler): a stream table never reads more than its owner may.
        -- A refreshing role that is not a member of the owner role runs it with its own rights.
        SELECT c.relowner::regrole::text INTO v_owner FROM pg_class c WHERE c.oid = st.pgs_relid;
        v_old_role := current_setting('role');
        IF v_owner IS DISTINCT FROM current_user::text
           AND pg_has_role(current_user, v_owner::regrole, 'MEMBER') THEN
            PERFORM set_config('role', v_owner, true);
        END IF;
        IF v_path IN ('LINEAR', 'KEYED', 'AGG', 'CITUS_KEYS', 'CITUS_RECOMPUTE') THEN
            IF v_path LIKE 'CITUS%' THEN  -- [citus hook] 80_citus.sql
                v_res := pgstream_lite.citus_refresh(p_pgs_id, storage, v_plan);
                IF v_res.no_data THEN
                    v_action := 'NO_DATA';
                    v_path := 'NO_DATA';
                    v_reason := 'no change since the last refresh';
                END IF;
            ELSIF v_path = 'LINEAR' THEN
                v_res := pgstream_lite.refresh_linear(p_pgs_id, storage, v_plan,
                                                      st.frontier->>'snapshot');
            ELSIF v_path = 'AGG' THEN
                v_res := pgstream_lite.refresh_agg(p_pgs_id, storage, v_plan,
                                                   st.frontier->>'snapshot');
            ELSE
                v_res := pgstream_lite.refresh_keyed(p_pgs_id, storage, v_plan,
                                                     st.frontier->>'snapshot');
            END IF;
            IF v_res.truncated THEN
                v_path := 'RECOMPUTE';
                v_reason := pgstream_lite.marker_reason(p_pgs_id, st.frontier->>'snapshot');
            ELSE
                IF v_path = 'AGG' THEN
                    IF v_res.rebuilt THEN
                        v_reason := 'group state built by a full recompute (first AGG refresh, '
                                    'or after a refresh by another path)';
                    END IF;
                END IF;
                v_ins := v_res.ins;
                v_del := v_res.del;
                v_snap := v_res.snap;
            END IF;
        END IF;
        IF v_path IN ('RECOMPUTE', 'FULL') THEN
            -- [citus hook] distributed storage: rows computed on the workers (80_citus.sql)
            v_rows := pgstream_lite.citus_full_rows_sql(p_pgs_id);
            v_distributed := v_rows IS NOT NULL;
            v_rows := coalesce(v_rows, pgstream_lite.rows_sql(p_pgs_id));
        END IF;
        IF v_path = 'RECOMPUTE' THEN
            -- the query's statement snapshot is the frontier (see 45_delta.sql)
            EXECUTE format(
                E'WITH src AS MATERIALIZED (\n%s\n),\n'
                || E'del AS (DELETE FROM %s t WHERE NOT EXISTS '
                || E'(SELECT 1 FROM src WHERE src.__pgs_row_id = t.__pgs_row_id) RETURNING 1),\n'
                || E'ins AS (INSERT INTO %s (__pgs_row_id, %s) SELECT src.__pgs_row_id, %s FROM src '
                || E'WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.__pgs_row_id = src.__pgs_row_id) '
                || E'RETURNING 1)\n'
                || E'SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del), '
                || E'pg_current_snapshot()::text',
                v_rows, storage, storage, v_cols,
                (SELECT string_agg(format('src.%I', c), ', ' ORDER BY o)
                   FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o)),
                storage)
            INTO v_ins, v_del, v_snap;
        ELSIF v_path = 'FULL' THEN
            EXECUTE format('SELECT count(*) FROM %s', storage) INTO v_del;
            EXECUTE format('TRUNCATE %s', storage);
            IF v_distributed THEN
                -- Citus would ship every RETURNING row to the coordinator (twice the time of the
                -- INSERT); the frontier does not select a distributed source's changes (claims
                -- do: 80_citus.sql), so it need not share the INSERT's statement
                EXECUTE format(E'INSERT INTO %s (__pgs_row_id, %s)\n%s', storage, v_cols, v_rows);
                GET DIAGNOSTICS v_ins = ROW_COUNT;
                v_snap := pg_current_snapshot()::text;
            ELSE
                EXECUTE format(E'WITH ins AS (INSERT INTO %s (__pgs_row_id, %s)\n%s\nRETURNING 1)\n'
                               'SELECT count(*), pg_current_snapshot()::text FROM ins',
                               storage, v_cols, v_rows)
                    INTO v_ins, v_snap;
            END IF;
        END IF;
        IF v_path <> 'AGG' THEN
            -- the AGG path's state no longer follows the stored rows
            UPDATE pgstream_lite.st_meta x SET dvm_state_ok = false
             WHERE x.pgs_id = p_pgs_id AND x.dvm_state_ok;
        END IF;
        PERFORM set_config('role', v_old_role, true),
                set_config('pgstream_lite.refreshing', v_old_flag, true),
                set_config('search_path', v_old_path, true);
        PERFORM set_config(g, v_old_fmt[o], true)
           FROM unnest(pgstream_lite.refresh_format_settings()) WITH ORDINALITY AS u(g, o);
    END IF;

    -- Downstream stream tables see this table's changes through a marker row.
    IF v_ins + v_del > 0 THEN
        SELECT * INTO v_marker FROM pgstream_lite.capture c
         WHERE c.source_relid = st.pgs_relid AND c.kind = 'MARKER';
        IF FOUND THEN
            EXECUTE format('INSERT INTO %I.%I (op, row_new) VALUES (''R'', $1)',
                           v_marker.buffer_schema, v_marker.buffer_name)
                USING jsonb_build_object('action', v_action, 'rows_inserted', v_ins,
                                         'rows_deleted', v_del);
        END IF;
    END IF;

    UPDATE pgstream.pgs_stream_tables s
       SET data_timestamp = v_start,
           last_refresh_at = v_start,
           is_populated = true,
           frontier = jsonb_build_object('snapshot', v_snap),
           consecutive_errors = 0,
           needs_reinit = false,
           status = CASE WHEN s.status IN ('INITIALIZING', 'ERROR') THEN 'ACTIVE' ELSE s.status END
     WHERE s.pgs_id = p_pgs_id;

    v_secs := CASE WHEN pgstream_lite.cron_is_cron(st.schedule) THEN NULL
                   ELSE pgstream.parse_duration_seconds(st.schedule) END;
    INSERT INTO pgstream.pgs_refresh_history
        (pgs_id, data_timestamp, start_time, end_time, action, rows_inserted, rows_deleted,
         status, initiated_by, freshness_deadline)
    VALUES (p_pgs_id, v_start, v_start, clock_timestamp(), v_action, v_ins, v_del,
            'COMPLETED', p_initiated_by, v_start + make_interval(secs => v_secs))
    RETURNING refresh_id INTO v_refresh_id;
    PERFORM pgstream_lite.record_path(v_refresh_id, v_path, v_reason);

    PERFORM pgstream_lite.prune_history(p_pgs_id);
    -- NO_DATA: its buffers hold no change it had not consumed, so nothing it frees now; the
    -- frontier it moved lets the next refresh of any reader of a shared source free more
    IF v_action <> 'NO_DATA' THEN
        PERFORM pgstream_lite.cleanup_buffers(p_pgs_id);
    END IF;
    RETURN v_action;
END;
$$;

-- Refresh for the scheduler: never raises. A failure is recorded (history row FAILED,
-- consecutive_errors + 1, SUSPENDED after pg_stream.max_consecutive_errors in a row); a lost
-- advisory lock is recorded as SKIP. Returns COMPLETED:<action>, SKIPPED or FAILED.
CREATE OR REPLACE FUNCTION pgstream_lite.scheduled_refresh(p_pgs_id bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_action text;
    v_start timestamptz := clock_timestamp();
    v_msg text;
    v_state text;
    v_max integer;
    st pgstream.pgs_stream_tables;
    v_gone record;
    v_marked_before boolean;
BEGIN
    -- Its storage table was dropped and no event trigger (35_ddl_events.sql) removed its row:
    -- do what the trigger does (remove it, mark its readers), whatever its status.
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    v_marked_before := FOUND AND st.status = 'ERROR' AND st.needs_reinit;
    IF v_marked_before AND NOT pgstream_lite.storage_missing(st.pgs_relid)
       AND pgstream_lite.drop_event_trigger_installed() THEN
        -- marked by the event trigger (a relation it reads was dropped) after the tick chose
        -- it: no refresh can succeed until it is created again, and the failure would not be
        -- its own error. (Without the event trigger the tick's own refreshes mark tables, and
        -- record the failure that found the drop.)
        RETURN 'SKIPPED';
    END IF;
    IF FOUND AND st.pgs_relid IS NOT NULL AND pgstream_lite.storage_missing(st.pgs_relid) THEN
        BEGIN
            v_gone := pgstream_lite.handle_dropped_relations(ARRAY[st.pgs_relid]);
            IF v_gone.removed > 0 THEN
                RETURN format('FAILED: the storage table of stream table %s.%s was dropped: the '
                              'stream table was removed from the catalog', st.pgs_schema,
                              st.pgs_name);
            END IF;
        EXCEPTION WHEN others THEN
            NULL;  -- e.g. no right to drop a source's capture trigger: recorded as a failure below
        END;
    END IF;
    BEGIN
        v_action := pgstream_lite.refresh_st(p_pgs_id, 'SCHEDULER');
        RETURN 'COMPLETED:' || v_action;
    EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
    END;
    -- The stream table may be dropped meanwhile (e.g. replaced by dbt, whose refresh lock made
    -- this one skip): lock its row against that while recording, and record nothing if gone.
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN 'SKIPPED';
    END IF;
    IF v_state = '55P03' THEN  -- lock_not_available: another refresh holds it (refresh_st)
        INSERT INTO pgstream.pgs_refresh_history
            (pgs_id, data_timestamp, start_time, end_time, action, status, initiated_by, error_message)
        VALUES (p_pgs_id, st.data_timestamp, v_start, clock_timestamp(), 'SKIP', 'SKIPPED',
                'SCHEDULER', v_msg);
        PERFORM pgstream_lite.prune_history(p_pgs_id);
        RETURN 'SKIPPED';
    END IF;
    v_max := pgstream_lite.setting_int('pg_stream.max_consecutive_errors', 3);
    UPDATE pgstream.pgs_stream_tables s
           -- marked ERROR / needs_reinit while this refresh ran: a relation it reads was dropped
           -- meanwhile (the event trigger marked it, 35_ddl_events.sql) and the refresh failed on
           -- that: no error of its own to count
       SET consecutive_errors = s.consecutive_errors
                                + CASE WHEN NOT v_marked_before AND st.status = 'ERROR'
                                            AND st.needs_reinit THEN 0 ELSE 1 END,
           -- undefined_table: it reads a relation that was dropped (refresh_st), or its query
           -- names one that no longer exists: only re-creating it helps. Marked as the event
           -- trigger marks it (35_ddl_events.sql): ERROR, needs_reinit, never SUSPENDED for it.
           needs_reinit = s.needs_reinit OR v_state = '42P01',
           status = CASE WHEN v_state = '42P01' THEN 'ERROR'
                         WHEN s.consecutive_errors + 1 >= v_max
                              AND s.status IN ('ACTIVE', 'INITIALIZING')
                         THEN 'SUSPENDED' ELSE s.status END,
           updated_at = now()
     WHERE s.pgs_id = p_pgs_id;
    INSERT INTO pgstream.pgs_refresh_history
        (pgs_id, data_timestamp, start_time, end_time, action, status, initiated_by, error_message)
    VALUES (p_pgs_id, st.data_timestamp, v_start, clock_timestamp(),
            CASE WHEN st.refresh_mode = 'FULL' OR NOT st.is_populated THEN 'FULL'
                 ELSE 'DIFFERENTIAL' END,
            'FAILED', 'SCHEDULER', v_msg);
    PERFORM pgstream_lite.prune_history(p_pgs_id);
    RETURN 'FAILED: ' || v_msg;
END;
$$;
