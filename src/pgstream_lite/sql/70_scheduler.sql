-- pgstream-lite: what the scheduler (src/pgstream_lite/scheduler.py, the extension's background
-- worker) asks the database: whether it is enabled, how often to wake, and which stream tables
-- are due, upstream first.

CREATE OR REPLACE FUNCTION pgstream_lite.scheduler_enabled()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pgstream_lite.setting_bool('pg_stream.enabled', true)
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.scheduler_interval_ms()
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT greatest(pgstream_lite.setting_int('pg_stream.scheduler_interval_ms', 1000), 10)
$$;

-- Is the stream table due by its own schedule at p_at? (CALCULATED: only when never populated.)
CREATE OR REPLACE FUNCTION pgstream_lite.own_due(st pgstream.pgs_stream_tables, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN NOT st.is_populated OR st.data_timestamp IS NULL THEN true
        -- CALCULATED: driven by its dependents (see due_stream_tables); with no ACTIVE
        -- dependent at all it falls back to the default schedule of 1 minute.
        WHEN st.schedule IS NULL THEN
            NOT EXISTS (SELECT 1 FROM pgstream.pgs_dependencies d
                          JOIN pgstream.pgs_stream_tables s ON s.pgs_id = d.pgs_id
                         WHERE d.source_relid = st.pgs_relid
                           AND s.status IN ('ACTIVE', 'INITIALIZING'))
            AND p_at - st.data_timestamp >= interval '1 minute'
        WHEN pgstream_lite.cron_is_cron(st.schedule) THEN
            st.last_refresh_at IS NULL
            OR pgstream_lite.cron_next(st.schedule, st.last_refresh_at) <= p_at
        ELSE p_at - st.data_timestamp
             >= make_interval(secs => pgstream.parse_duration_seconds(st.schedule))
    END
$$;

-- The backoff part of held_back (below): is p_at within the wait after its last failed attempt?
CREATE OR REPLACE FUNCTION pgstream_lite.backing_off(st pgstream.pgs_stream_tables,
                                                     p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (st.consecutive_errors > 0
            AND p_at < (SELECT max(h.end_time) FROM pgstream.pgs_refresh_history h
                         WHERE h.pgs_id = st.pgs_id AND h.status = 'FAILED')
                       + make_interval(secs => least(
                             power(2, least(st.consecutive_errors - 1, 20)),
                             CASE WHEN st.schedule IS NULL OR pgstream_lite.cron_is_cron(st.schedule)
                                  THEN 60
                                  ELSE pgstream.parse_duration_seconds(st.schedule) END)))
$$;

-- Is the stream table held back from the scheduler at p_at, whatever its schedule?
--   needs_reinit: it reads a relation that was dropped; no refresh can succeed until it is
--     created again (dbt run does it), so none is attempted and its error budget is not spent;
--   after a failure: exponential backoff, 2^(errors - 1) seconds after the last failed attempt,
--     capped by its schedule (a duration; 1 minute for cron and CALCULATED), instead of a retry
--     on every tick.
CREATE OR REPLACE FUNCTION pgstream_lite.held_back(st pgstream.pgs_stream_tables, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT st.needs_reinit OR pgstream_lite.backing_off(st, p_at)
$$;

-- ACTIVE and INITIALIZING stream tables due at p_at, upstream before downstream (depth in the
-- stream-table graph, then name). A CALCULATED table (NULL schedule) is due when any stream table
-- reading it is due. An INITIALIZING table (created with initialize => false) is never populated,
-- so it is due at once; its first refresh makes it ACTIVE.
CREATE OR REPLACE FUNCTION pgstream_lite.due_stream_tables(p_at timestamptz DEFAULT clock_timestamp())
RETURNS TABLE (pgs_id bigint, name text, depth integer, reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_due bigint[];
    v_calc bigint[] := '{}';
    v_new bigint[];
    rounds integer := 0;
BEGIN
    v_due := ARRAY(SELECT s.pgs_id FROM pgstream.pgs_stream_tables s
                    WHERE s.status IN ('ACTIVE', 'INITIALIZING') AND pgstream_lite.own_due(s, p_at)
                      AND NOT pgstream_lite.held_back(s, p_at));
    -- A relation under it was dropped and no event trigger (35_ddl_events.sql) acted on it: due
    -- at once, whatever its schedule, so that its refresh marks it (a source) or removes it (its
    -- storage table, whatever its status) at this tick rather than at its next scheduled time.
    v_due := v_due || ARRAY(
        SELECT s.pgs_id FROM pgstream.pgs_stream_tables s
         WHERE NOT (s.pgs_id = ANY (v_due))
           AND ((pgstream_lite.storage_missing(s.pgs_relid)
                 AND NOT pgstream_lite.backing_off(s, p_at))
                OR (s.status IN ('ACTIVE', 'INITIALIZING') AND NOT s.needs_reinit
                    AND pgstream_lite.reads_dropped(s.pgs_id))));
    -- CALCULATED: due when a dependent is due (to a fixpoint, for chains of CALCULATED tables)
    LOOP
        rounds := rounds + 1;
        v_new := ARRAY(
            SELECT s.pgs_id FROM pgstream.pgs_stream_tables s
             WHERE s.status IN ('ACTIVE', 'INITIALIZING') AND s.schedule IS NULL
               AND NOT (s.pgs_id = ANY (v_due)) AND NOT pgstream_lite.held_back(s, p_at)
               AND EXISTS (SELECT 1 FROM pgstream.pgs_dependencies d
                            WHERE d.source_relid = s.pgs_relid AND d.pgs_id = ANY (v_due)));
        EXIT WHEN cardinality(v_new) = 0 OR rounds > 100;
        v_due := v_due || v_new;
        v_calc := v_calc || v_new;
    END LOOP;
    RETURN QUERY
    -- depth = the longest chain of stream tables a table reads from. UNION, not UNION ALL: each
    -- (table, level) is visited once, where UNION ALL would walk every path (exponentially many
    -- in a graph of diamonds); the same walk as the dbt package's (_pgstream_depth_ctes).
    WITH RECURSIVE up (pgs_id, lvl) AS (
        SELECT s.pgs_id, 0 FROM pgstream.pgs_stream_tables s
        UNION
        SELECT s.pgs_id, up.lvl + 1
          FROM up
          JOIN pgstream.pgs_stream_tables u ON u.pgs_id = up.pgs_id
          JOIN pgstream.pgs_dependencies d ON d.source_relid = u.pgs_relid
          JOIN pgstream.pgs_stream_tables s ON s.pgs_id = d.pgs_id
         WHERE up.lvl < 1000
    ), depths AS (
        SELECT up.pgs_id, max(up.lvl)::integer AS lvl FROM up GROUP BY up.pgs_id
    )
    SELECT s.pgs_id, s.pgs_schema || '.' || s.pgs_name, dp.lvl,
           CASE WHEN pgstream_lite.storage_missing(s.pgs_relid) THEN 'storage dropped'
                WHEN s.pgs_id = ANY (v_calc) THEN 'calculated'
                WHEN NOT s.is_populated OR s.data_timestamp IS NULL THEN 'not populated'
                WHEN pgstream_lite.cron_is_cron(s.schedule) THEN 'cron'
                ELSE 'duration' END
      FROM pgstream.pgs_stream_tables s
      JOIN depths dp ON dp.pgs_id = s.pgs_id
     WHERE s.pgs_id = ANY (v_due)
     ORDER BY dp.lvl, s.pgs_schema, s.pgs_name;
END;
$$;
