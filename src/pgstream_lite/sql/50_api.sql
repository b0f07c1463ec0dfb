-- pgstream-lite: the user API (create / alter / drop / refresh).

CREATE OR REPLACE FUNCTION pgstream.create_stream_table(
    name text,
    query text,
    schedule text DEFAULT '1m',
    refresh_mode text DEFAULT 'DIFFERENTIAL',
    initialize boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql SET client_min_messages = warning AS $$
DECLARE
    p_name text := name;
    p_query text := query;
    p_schedule text := schedule;
    p_mode text := refresh_mode;
    p_init boolean := coalesce(initialize, true);
    v_mode text;
    v_sched text;
    v_schema text;
    v_table text;
    v_body text;
    v_probe text := '__pgs_probe_' || pg_backend_pid();
    v_probe_oid oid;
    v_ncols integer;
    v_cols text[];
    v_coldefs text;
    v_relid oid;
    v_id bigint;
    v_path text;
    v_limit text;
    v_shape record;
    v_count text;
    v_group_cols text;
    dep record;
BEGIN
    -- 1. refresh mode, name, schedule (pg_stream 0.1's order)
    v_mode := pgstream_lite.normalize_mode(p_mode);
    SELECT s.schema_name, s.table_name INTO v_schema, v_table FROM pgstream_lite.split_name(p_name) s;
    v_sched := pgstream_lite.normalize_schedule(p_schedule);

    -- 2. the query. Like pg_stream 0.1, an invalid query fails with PostgreSQL's own error.
    IF p_query IS NULL THEN
        RAISE EXCEPTION 'query parse error: the defining query is NULL';
    END IF;
    v_body := pgstream_lite.query_body(p_query);
    EXECUTE format(E'SELECT * FROM (\n%s\n) sub LIMIT 0', v_body);
    EXECUTE format('DROP VIEW IF EXISTS pg_temp.%I', v_probe);
    EXECUTE format(E'CREATE TEMPORARY VIEW %I AS\n%s\n', v_probe, v_body);
    v_probe_oid := format('pg_temp.%I', v_probe)::regclass;
    SELECT count(*),
           array_agg(a.attname::text ORDER BY a.attnum)
               FILTER (WHERE a.attname NOT IN ('__pgs_row_id', '__pgs_count')),
           string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                             CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                  THEN ' COLLATE ' || format('%I.%I', cn.nspname, co.collname)
                                  ELSE '' END),
                      ', ' ORDER BY a.attnum)
               FILTER (WHERE a.attname NOT IN ('__pgs_row_id', '__pgs_count'))
      INTO v_ncols, v_cols, v_coldefs
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
     WHERE a.attrelid = v_probe_oid AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_ncols = 0 OR v_cols IS NULL THEN
        RAISE EXCEPTION 'query parse error: Defining query returns no columns';
    END IF;
    -- LIMIT/OFFSET: refused in every refresh mode, in pg_stream 0.1's words
    v_limit := pgstream_lite.top_level_limit(v_probe_oid);
    IF v_limit IS NOT NULL THEN
        RAISE EXCEPTION 'unsupported operator for DIFFERENTIAL mode: % is not supported in defining '
                        'queries. Stream tables materialize the full result set.', v_limit;
    END IF;

    -- 3. an existing stream table
    IF EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables s
                WHERE s.pgs_schema = v_schema AND s.pgs_name = v_table) THEN
        RAISE EXCEPTION 'stream table already exists: %.%', v_schema, v_table;
    END IF;

    -- 4. a query reading no relation at all (e.g. only constants or functions)
    IF NOT EXISTS (SELECT 1 FROM pgstream_lite.collect_sources(v_probe_oid)) THEN
        RAISE EXCEPTION 'query parse error: Defining query references no tables';
    END IF;

    -- 4b. DIFFERENTIAL aggregate and DISTINCT queries: as in pg_stream 0.1, the storage table gets
    -- a last column __pgs_count (source rows per group or per distinct row), and an aggregate
    -- without HAVING an index on its GROUP BY columns. Fixed at creation: altering the refresh
    -- mode later changes neither (the count is maintained by every refresh while it exists).
    IF v_mode = 'DIFFERENTIAL' THEN
        v_shape := pgstream_lite.query_shape(v_probe_oid);
        IF v_shape.kind IS NOT NULL THEN
            v_count := pgstream_lite.count_query(v_body, v_shape.kind, v_probe_oid);
            IF v_count IS NULL THEN
                RAISE EXCEPTION 'unsupported operator for DIFFERENTIAL mode: pgstream-lite cannot '
                                'add the count of source rows (__pgs_count) to this % query',
                                lower(v_shape.kind);
            END IF;
        END IF;
    END IF;

    -- 5. the storage table
    IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_schema) THEN
        RAISE EXCEPTION 'invalid argument: schema "%" does not exist', v_schema;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = v_schema AND c.relname = v_table) THEN
        RAISE EXCEPTION 'invalid argument: relation %.% already exists and is not a stream table',
            v_schema, v_table;
    END IF;
    -- __pgs_row_id is nullable with a unique index, as in pg_stream 0.1 (refresh never writes NULL)
    EXECUTE format('CREATE TABLE %I.%I (__pgs_row_id bigint, %s%s)',
                   v_schema, v_table, v_coldefs,
                   CASE WHEN v_count IS NOT NULL THEN ', __pgs_count bigint NOT NULL DEFAULT 0'
                        ELSE '' END);
    v_relid := format('%I.%I', v_schema, v_table)::regclass;
    EXECUTE format('CREATE UNIQUE INDEX ON %I.%I (__pgs_row_id)', v_schema, v_table);
    IF v_count IS NOT NULL THEN
        IF v_shape.kind = 'AGGREGATE' AND NOT v_shape.has_having
           AND NOT v_shape.has_grouping_sets THEN
            -- named by PostgreSQL like pg_stream 0.1's: <table>_<column>[_<column>...]_idx
            SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.o) INTO v_group_cols
              FROM unnest(v_shape.group_attnums) WITH ORDINALITY AS k(attnum, o)
              JOIN pg_attribute a ON a.attrelid = v_probe_oid AND a.attnum = k.attnum
             WHERE a.attname NOT IN ('__pgs_row_id', '__pgs_count');
            IF v_group_cols IS NOT NULL THEN
                EXECUTE format('CREATE INDEX ON %I.%I (%s)', v_schema, v_table, v_group_cols);
            END IF;
        END IF;
    END IF;
    EXECUTE format('CREATE TRIGGER __pgs_guard_dml BEFORE INSERT OR UPDATE OR DELETE ON %I.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.guard_dml()', v_schema, v_table);
    EXECUTE format('CREATE TRIGGER __pgs_guard_truncate BEFORE TRUNCATE ON %I.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.guard_dml()', v_schema, v_table);
    EXECUTE format('COMMENT ON COLUMN %I.%I.__pgs_row_id IS %L', v_schema, v_table,
                   'pgstream row identity (hash of the row and its occurrence number)');
    IF v_count IS NOT NULL THEN
        EXECUTE format('COMMENT ON COLUMN %I.%I.__pgs_count IS %L', v_schema, v_table,
                       CASE v_shape.kind WHEN 'DISTINCT'
                            THEN 'pgstream: number of rows of the query behind this distinct row'
                            ELSE 'pgstream: number of source rows in this group' END);
    END IF;

    SELECT string_agg(quote_ident(s), ', ') INTO v_path FROM unnest(current_schemas(false)) s;
    INSERT INTO pgstream.pgs_stream_tables
        (pgs_relid, pgs_name, pgs_schema, defining_query, schedule, refresh_mode, status,
         is_populated)
    -- INITIALIZING until its first refresh (the initial load below, or a later manual or
    -- scheduled refresh when initialize => false) has populated it.
    VALUES (v_relid, v_table, v_schema, p_query, v_sched, v_mode, 'INITIALIZING', false)
    RETURNING pgs_id INTO v_id;
    INSERT INTO pgstream_lite.st_meta (pgs_id, body, columns, search_path, timezone, count_query)
    VALUES (v_id, v_body, v_cols, coalesce(v_path, ''), current_setting('TimeZone'), v_count);

    -- 6. dependencies, cycles, change capture
    INSERT INTO pgstream.pgs_dependencies (pgs_id, source_relid, source_type, columns_used, cdc_mode)
    SELECT v_id, s.relid, s.source_type, s.columns_used, 'TRIGGER'
      FROM pgstream_lite.collect_sources(v_probe_oid) s;
    -- their names now, to name them in errors once they are dropped (35_ddl_events.sql)
    PERFORM pgstream_lite.record_dependency_names(v_id);
    EXECUTE format('DROP VIEW pg_temp.%I', v_probe);
    PERFORM pgstream_lite.check_cycles(v_relid);
    FOR dep IN
        SELECT d.source_relid, d.source_type, c.relkind
          FROM pgstream.pgs_dependencies d JOIN pg_class c ON c.oid = d.source_relid
         WHERE d.pgs_id = v_id
    LOOP
        IF dep.source_type = 'STREAM_TABLE' THEN
            -- row triggers on the upstream's storage: its refreshes' writes are this table's
            -- delta (a FULL refresh of it truncates, and this table then recomputes)
            PERFORM pgstream_lite.ensure_capture(dep.source_relid, v_id, 'TRIGGER');
        ELSIF dep.source_type = 'TABLE' AND dep.relkind IN ('r', 'p') THEN
            PERFORM pgstream_lite.ensure_capture(dep.source_relid, v_id, 'TRIGGER');
        END IF;
    END LOOP;

    -- 7. initial load
    IF p_init THEN
        PERFORM pgstream_lite.refresh_st(v_id, 'INITIAL');
    END IF;
    PERFORM pgstream_lite.track_capture(c.source_relid, v_id)
       FROM pgstream_lite.capture c
       JOIN pgstream.pgs_dependencies d ON d.source_relid = c.source_relid AND d.pgs_id = v_id;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream.alter_stream_table(
    name text,
    schedule text DEFAULT NULL,
    refresh_mode text DEFAULT NULL,
    status text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p_name text := name;
    p_schedule text := schedule;
    p_mode text := refresh_mode;
    p_status text := status;
    st pgstream.pgs_stream_tables;
    v_sched text;
    v_mode text;
    v_status text;
BEGIN
    st := pgstream_lite.find_st(p_name);
    IF p_schedule IS NOT NULL THEN
        v_sched := pgstream_lite.normalize_schedule(p_schedule);
    END IF;
    IF p_mode IS NOT NULL THEN
        v_mode := pgstream_lite.normalize_mode(p_mode);
    END IF;
    IF p_status IS NOT NULL THEN
        v_status := upper(btrim(p_status));
        IF v_status NOT IN ('INITIALIZING', 'ACTIVE', 'SUSPENDED', 'ERROR') THEN
            RAISE EXCEPTION 'invalid argument: unknown status: %', upper(p_status);
        END IF;
    END IF;
    UPDATE pgstream.pgs_stream_tables s
       SET schedule = coalesce(v_sched, s.schedule),
           refresh_mode = coalesce(v_mode, s.refresh_mode),
           status = coalesce(v_status, s.status),
           consecutive_errors = CASE WHEN v_status = 'ACTIVE' THEN 0 ELSE s.consecutive_errors END,
           updated_at = now()
     WHERE s.pgs_id = st.pgs_id;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream.drop_stream_table(name text)
RETURNS void LANGUAGE plpgsql SET client_min_messages = warning AS $$
DECLARE
    p_name text := name;
    st pgstream.pgs_stream_tables;
BEGIN
    st := pgstream_lite.find_st(p_name);
    PERFORM pg_advisory_xact_lock(pgstream_lite.lock_key(), pgstream_lite.st_lock_id(st.pgs_id));
    -- Stream tables reading this one keep their (now dead) dependency and must be re-created:
    -- marked ERROR / needs_reinit, as a DROP of the storage table marks them (35_ddl_events.sql).
    UPDATE pgstream.pgs_stream_tables s
       SET status = 'ERROR', needs_reinit = true, updated_at = now()
     WHERE s.pgs_id IN (SELECT d.pgs_id FROM pgstream.pgs_dependencies d
                         WHERE d.source_relid = st.pgs_relid AND d.pgs_id <> st.pgs_id);
    PERFORM pgstream_lite.forget_stream_table(st.pgs_id);
    IF st.pgs_relid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = st.pgs_relid) THEN
        EXECUTE format('DROP TABLE %s CASCADE', st.pgs_relid::regclass);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream.refresh_stream_table(name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    st pgstream.pgs_stream_tables;
BEGIN
    st := pgstream_lite.find_st(refresh_stream_table.name);
    PERFORM pgstream_lite.refresh_st(st.pgs_id, 'MANUAL');
END;
$$;
