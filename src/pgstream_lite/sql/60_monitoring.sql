-- pgstream-lite: monitoring views and functions.

CREATE OR REPLACE FUNCTION pgstream_lite.schedule_seconds(p_schedule text)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_schedule IS NULL OR pgstream_lite.cron_is_cron(p_schedule) THEN NULL
                ELSE pgstream.parse_duration_seconds(p_schedule) END
$$;

-- A stream table's catalog row as the monitoring views and functions show it: computed on read,
-- a table whose storage table or one of whose sources was dropped is ERROR with needs_reinit
-- (not populated when its storage is gone), whether or not the sql_drop event trigger
-- (35_ddl_events.sql) has marked it yet: without the trigger (an install by a role that is not
-- a superuser) the catalog row says so only from the scheduler's next tick on.
CREATE OR REPLACE FUNCTION pgstream_lite.st_shown(st pgstream.pgs_stream_tables)
RETURNS pgstream.pgs_stream_tables LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_gone boolean := pgstream_lite.storage_missing(st.pgs_relid);
BEGIN
    IF v_gone OR pgstream_lite.reads_dropped(st.pgs_id) THEN
        st.status := 'ERROR';
        st.needs_reinit := true;
        st.is_populated := st.is_populated AND NOT v_gone;
    END IF;
    RETURN st;
END;
$$;

CREATE OR REPLACE VIEW pgstream.stream_tables_info AS
SELECT st.pgs_id, st.pgs_relid, st.pgs_name, st.pgs_schema, st.defining_query, st.schedule,
       st.refresh_mode, st.status, st.is_populated, st.data_timestamp, st.frontier,
       st.last_refresh_at, st.consecutive_errors, st.needs_reinit, st.created_at, st.updated_at,
       now() - st.data_timestamp AS staleness,
       extract(epoch FROM now() - st.data_timestamp) > pgstream_lite.schedule_seconds(st.schedule)
           AS stale
  FROM pgstream.pgs_stream_tables raw
  CROSS JOIN LATERAL pgstream_lite.st_shown(raw) st;

CREATE OR REPLACE VIEW pgstream.pg_stat_stream_tables AS
SELECT st.pgs_id, st.pgs_schema, st.pgs_name, st.status, st.refresh_mode, st.is_populated,
       st.data_timestamp, st.schedule,
       now() - st.data_timestamp AS staleness,
       extract(epoch FROM now() - st.data_timestamp) > pgstream_lite.schedule_seconds(st.schedule)
           AS stale,
       st.consecutive_errors, st.needs_reinit, st.last_refresh_at,
       coalesce(h.total_refreshes, 0) AS total_refreshes,
       coalesce(h.successful_refreshes, 0) AS successful_refreshes,
       coalesce(h.failed_refreshes, 0) AS failed_refreshes,
       coalesce(h.total_rows_inserted, 0) AS total_rows_inserted,
       coalesce(h.total_rows_deleted, 0) AS total_rows_deleted,
       h.avg_duration_ms,
       l.action AS last_action,
       l.status AS last_status
  FROM pgstream.pgs_stream_tables raw
  CROSS JOIN LATERAL pgstream_lite.st_shown(raw) st
  LEFT JOIN LATERAL (
        SELECT count(*)::bigint AS total_refreshes,
               count(*) FILTER (WHERE x.status = 'COMPLETED')::bigint AS successful_refreshes,
               count(*) FILTER (WHERE x.status = 'FAILED')::bigint AS failed_refreshes,
               sum(x.rows_inserted)::bigint AS total_rows_inserted,
               sum(x.rows_deleted)::bigint AS total_rows_deleted,
               (avg(extract(epoch FROM x.end_time - x.start_time) * 1000)
                   FILTER (WHERE x.status = 'COMPLETED'))::float8 AS avg_duration_ms
          FROM pgstream.pgs_refresh_history x
         WHERE x.pgs_id = st.pgs_id) h ON true
  LEFT JOIN LATERAL (
        SELECT x.action, x.status FROM pgstream.pgs_refresh_history x
         WHERE x.pgs_id = st.pgs_id ORDER BY x.refresh_id DESC LIMIT 1) l ON true;

CREATE OR REPLACE FUNCTION pgstream.pgs_status()
RETURNS TABLE (name text, status text, refresh_mode text, is_populated boolean,
               consecutive_errors integer, schedule text, data_timestamp timestamptz,
               staleness interval)
LANGUAGE sql STABLE AS $$
    SELECT st.pgs_schema || '.' || st.pgs_name, st.status, st.refresh_mode, st.is_populated,
           st.consecutive_errors, st.schedule, st.data_timestamp, now() - st.data_timestamp
      FROM pgstream.pgs_stream_tables raw
     CROSS JOIN LATERAL pgstream_lite.st_shown(raw) st
     ORDER BY st.pgs_schema, st.pgs_name
$$;

CREATE OR REPLACE FUNCTION pgstream.st_refresh_stats()
RETURNS TABLE (pgs_name text, pgs_schema text, status text, refresh_mode text,
               is_populated boolean, total_refreshes bigint, successful_refreshes bigint,
               failed_refreshes bigint, total_rows_inserted bigint, total_rows_deleted bigint,
               avg_duration_ms float8, last_refresh_action text, last_refresh_status text,
               last_refresh_at timestamptz, staleness_secs float8, stale boolean)
LANGUAGE sql STABLE AS $$
    SELECT s.pgs_name, s.pgs_schema, s.status, s.refresh_mode, s.is_populated,
           s.total_refreshes, s.successful_refreshes, s.failed_refreshes,
           s.total_rows_inserted, s.total_rows_deleted, s.avg_duration_ms,
           s.last_action, s.last_status, s.last_refresh_at,
           extract(epoch FROM s.staleness)::float8, s.stale
      FROM pgstream.pg_stat_stream_tables s
     ORDER BY s.pgs_schema, s.pgs_name
$$;

CREATE OR REPLACE FUNCTION pgstream.get_refresh_history(name text, max_rows integer DEFAULT 20)
RETURNS TABLE (refresh_id bigint, data_timestamp timestamptz, start_time timestamptz,
               end_time timestamptz, action text, status text, rows_inserted bigint,
               rows_deleted bigint, duration_ms float8, error_message text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    st pgstream.pgs_stream_tables;
BEGIN
    st := pgstream_lite.find_st(get_refresh_history.name);
    RETURN QUERY
        SELECT h.refresh_id, h.data_timestamp, h.start_time, h.end_time, h.action, h.status,
               h.rows_inserted, h.rows_deleted,
               (extract(epoch FROM h.end_time - h.start_time) * 1000)::float8, h.error_message
          FROM pgstream.pgs_refresh_history h
         WHERE h.pgs_id = st.pgs_id
         ORDER BY h.refresh_id DESC
         LIMIT greatest(coalesce(max_rows, 20), 0);
END;
$$;

-- Seconds since the last refresh; NULL when never refreshed and, as in pg_stream 0.1, when there
-- is no such stream table.
CREATE OR REPLACE FUNCTION pgstream.get_staleness(name text)
RETURNS float8 LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_schema text;
    v_table text;
    dot integer := strpos(get_staleness.name, '.');
BEGIN
    IF dot = 0 THEN
        v_schema := current_schema();
        v_table := get_staleness.name;
    ELSE
        v_schema := substr(get_staleness.name, 1, dot - 1);
        v_table := substr(get_staleness.name, dot + 1);
    END IF;
    RETURN (SELECT extract(epoch FROM now() - st.data_timestamp)::float8
              FROM pgstream.pgs_stream_tables st
             WHERE st.pgs_schema = v_schema AND st.pgs_name = v_table);
END;
$$;

CREATE OR REPLACE FUNCTION pgstream.check_cdc_health()
RETURNS TABLE (source_relid bigint, source_table text, cdc_mode text, slot_name text,
               lag_bytes bigint, confirmed_lsn text, alert text)
LANGUAGE sql STABLE AS $$
    SELECT t.source_relid::bigint, pgstream_lite.relname(t.source_relid), 'TRIGGER'::text,
           NULL::text, NULL::bigint, NULL::text,
           CASE WHEN NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.source_relid)
                THEN 'source table no longer exists' END
      FROM pgstream.pgs_change_tracking t
     ORDER BY t.source_relid
$$;

-- The properties pg_stream 0.1 reports, in its order. pgstream-lite has no operator tree and no
-- delta query (it re-runs the defining query and compares row ids): those values say so. An
-- unknown name gives one row ('error', 'stream table not found: ...'), as in pg_stream 0.1.
CREATE OR REPLACE FUNCTION pgstream.explain_st(name text)
RETURNS TABLE (property text, value text)
LANGUAGE plpgsql AS $$
DECLARE
    st pgstream.pgs_stream_tables;
    v_plan jsonb;
BEGIN
    BEGIN
        st := pgstream_lite.st_shown(pgstream_lite.find_st(explain_st.name));
    EXCEPTION WHEN raise_exception THEN
        RETURN QUERY SELECT 'error'::text, SQLERRM::text;
        RETURN;
    END;
    -- the path a DIFFERENTIAL refresh takes, and why (see 45_delta.sql)
    IF st.refresh_mode = 'DIFFERENTIAL' THEN
        BEGIN
            v_plan := pgstream_lite.st_plan(st.pgs_id);
        EXCEPTION WHEN others THEN
            v_plan := jsonb_build_object('path', 'RECOMPUTE', 'reason',
                                         'plan not available here: ' || SQLERRM);
        END;
    END IF;
    -- [citus hook] a stream table reading Citus tables: its storage and path (80_citus.sql)
    v_plan := coalesce(pgstream_lite.citus_explain(st.pgs_id, st.refresh_mode), v_plan);
    RETURN QUERY
    SELECT x.p, x.v FROM (VALUES
        (1, 'pgs_name', st.pgs_schema || '.' || st.pgs_name),
        (2, 'defining_query', st.defining_query),
        (3, 'refresh_mode', st.refresh_mode),
        (4, 'status', st.status),
        (5, 'is_populated', st.is_populated::text),
        -- every query pgstream-lite accepts can be refreshed DIFFERENTIAL (see operator_tree)
        (6, 'dvm_supported', 'true'),
        (7, 'operator_tree',
            CASE WHEN v_plan IS NULL THEN
                'FULL: refresh mode FULL re-runs the whole defining query'
            ELSE format('%s: %s', v_plan->>'path', v_plan->>'reason')
                 || CASE v_plan->>'path'
                        WHEN 'RECOMPUTE' THEN
                            ' (not handled incrementally: a DIFFERENTIAL refresh re-runs the whole '
                            'defining query and writes only the rows whose __pgs_row_id is new '
                            'or gone)'
                        ELSE '' END
            END),
        (8, 'output_columns',
            coalesce((SELECT array_to_string(m.columns, ', ') FROM pgstream_lite.st_meta m
                       WHERE m.pgs_id = st.pgs_id), '')),
        (9, 'source_oids',
            coalesce((SELECT string_agg(d.source_relid::text, ', ' ORDER BY d.source_relid)
                        FROM pgstream.pgs_dependencies d
                       WHERE d.pgs_id = st.pgs_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')),
                     '')),
        (10, 'delta_query',
            CASE WHEN v_plan->>'path' IN ('LINEAR', 'KEYED', 'AGG') THEN
                'built at each refresh from the change buffers of '
                || (SELECT string_agg(DISTINCT pgstream_lite.relname((x->>'relid')::oid), ', ')
                      FROM jsonb_array_elements(v_plan->'items') x)
                || '; a TRUNCATE of a source makes that refresh RECOMPUTE'
            ELSE 'none: this table has no delta query; see operator_tree' END),
        (11, 'frontier', coalesce(st.frontier::text, 'null'))
    ) AS x(o, p, v)
    ORDER BY x.o;
END;
$$;
