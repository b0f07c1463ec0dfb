-- pgstream-lite: query analysis, dependencies, cycle detection, change capture, DML guard.

-- The one SQL lexer of the engine's query text analysis (query_body, top_level_words here,
-- top_level_tokens in 45_delta.sql): every token of p_sql with its 1-based character position,
-- length and parenthesis depth (a '(' and its ')' at the depth outside them). Kinds: 'w' word
-- (tok upper-cased), 'q' quoted identifier, 's' string (also E'' with backslash escapes and
-- dollar quotes of any tag), 'n' number, '(' ')' '.' ',' ';', 'o' any other character. Comments
-- (nested /* */ and --) and whitespace are skipped; an unterminated string or comment runs to
-- the end. tok is the text as written except for words.
CREATE OR REPLACE FUNCTION pgstream_lite.sql_lex(p_sql text)
RETURNS TABLE (pos integer, len integer, depth integer, kind text, tok text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c text[] := regexp_split_to_array(coalesce(p_sql, ''), '');
    n integer;
    i integer := 1;
    j integer;
    k integer;
    d integer := 0;
    cdepth integer;
    ch text;
    tag text;
    esc boolean;
BEGIN
    n := coalesce(array_length(c, 1), 0);
    WHILE i <= n LOOP
        ch := c[i];
        IF ch ~ '^\s$' THEN
            i := i + 1;
            CONTINUE;
        ELSIF ch = '-' AND i < n AND c[i + 1] = '-' THEN
            WHILE i <= n AND c[i] <> E'\n' LOOP i := i + 1; END LOOP;
            CONTINUE;
        ELSIF ch = '/' AND i < n AND c[i + 1] = '*' THEN
            cdepth := 1;
            i := i + 2;
            WHILE i <= n AND cdepth > 0 LOOP
                IF c[i] = '*' AND i < n AND c[i + 1] = '/' THEN
                    cdepth := cdepth - 1; i := i + 2;
                ELSIF c[i] = '/' AND i < n AND c[i + 1] = '*' THEN
                    cdepth := cdepth + 1; i := i + 2;
                ELSE
                    i := i + 1;
                END IF;
            END LOOP;
            CONTINUE;
        END IF;
        pos := i;
        depth := d;
        IF ch = '''' OR (ch IN ('E', 'e') AND i < n AND c[i + 1] = '''') THEN
            -- a string literal: a doubled quote is part of it; a backslash escapes the next
            -- character only in an E'' string
            esc := ch <> '''';
            j := CASE WHEN esc THEN i + 2 ELSE i + 1 END;
            WHILE j <= n LOOP
                IF esc AND c[j] = '\' THEN
                    j := j + 2;
                ELSIF c[j] = '''' AND j < n AND c[j + 1] = '''' THEN
                    j := j + 2;
                ELSIF c[j] = '''' THEN
                    EXIT;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            j := least(j, n);
            kind := 's';
        ELSIF ch = '"' THEN
            j := i + 1;
            WHILE j <= n LOOP
                IF c[j] = '"' AND j < n AND c[j + 1] = '"' THEN
                    j := j + 2;
                ELSIF c[j] = '"' THEN
                    EXIT;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            j := least(j, n);
            kind := 'q';
        ELSIF ch = '$' THEN
            -- a dollar quote $tag$...$tag$ (a tag does not start with a digit), else a
            -- parameter ($1) or a lone $
            j := i + 1;
            WHILE j <= n AND (c[j] ~ '^[A-Za-z0-9_]$' OR ascii(c[j]) > 127) LOOP j := j + 1; END LOOP;
            IF j <= n AND c[j] = '$' AND (j = i + 1 OR c[i + 1] !~ '^[0-9]$') THEN
                tag := array_to_string(c[i:j], '');
                k := strpos(substr(p_sql, j + 1), tag);
                j := CASE WHEN k = 0 THEN n ELSE j + k + length(tag) - 1 END;
                kind := 's';
            ELSE
                j := i;
                WHILE j < n AND c[j + 1] ~ '^[0-9]$' LOOP j := j + 1; END LOOP;
                kind := 'o';
            END IF;
        ELSIF ch ~ '^[A-Za-z_]$' OR ascii(ch) > 127 THEN
            j := i;
            WHILE j < n AND (c[j + 1] ~ '^[A-Za-z0-9_$]$' OR ascii(c[j + 1]) > 127) LOOP
                j := j + 1;
            END LOOP;
            kind := 'w';
        ELSIF ch ~ '^[0-9]$' THEN
            -- a number, with what may follow its digits (exponent, decimals)
            j := i;
            WHILE j < n AND c[j + 1] ~ '^[0-9A-Za-z_.$]$' LOOP j := j + 1; END LOOP;
            kind := 'n';
        ELSIF ch = '(' THEN
            j := i;
            kind := '(';
            d := d + 1;
        ELSIF ch = ')' THEN
            j := i;
            kind := ')';
            d := greatest(d - 1, 0);
            depth := d;
        ELSIF ch IN ('.', ',', ';') THEN
            j := i;
            kind := ch;
        ELSE
            j := i;
            kind := 'o';
        END IF;
        len := j - i + 1;
        tok := substr(p_sql, i, len);
        IF kind = 'w' THEN
            tok := upper(tok);
        END IF;
        RETURN NEXT;
        i := j + 1;
    END LOOP;
END;
$$;

-- The defining query without trailing whitespace/comments and one trailing semicolon, ready to be
-- embedded as a subquery (tokens from sql_lex: ';' or '--' inside literals are kept).
-- A second top-level statement is a syntax error.
CREATE OR REPLACE FUNCTION pgstream_lite.query_body(p_query text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t record;
    last_end integer := 0;
    last_semi integer;
BEGIN
    FOR t IN SELECT * FROM pgstream_lite.sql_lex(p_query) x ORDER BY x.pos LOOP
        IF last_semi IS NOT NULL THEN
            -- something significant after a top-level semicolon: a second statement. PostgreSQL
            -- itself says this when the query is embedded as a subquery (as pg_stream 0.1 does).
            RAISE EXCEPTION 'syntax error at or near ";"' USING ERRCODE = 'syntax_error',
                DETAIL = 'The defining query of a stream table must be one SELECT statement.';
        END IF;
        IF t.kind = ';' THEN
            last_semi := t.pos;
        END IF;
        last_end := t.pos + t.len - 1;
    END LOOP;
    IF last_semi IS NOT NULL THEN
        RETURN substr(p_query, 1, last_semi - 1);
    END IF;
    RETURN substr(p_query, 1, last_end);
END;
$$;

-- LIMIT or OFFSET at the top level of the (view's) query: 'LIMIT' (also FETCH FIRST), 'OFFSET' or
-- NULL. Read from the parse tree stored in pg_rewrite, so literals, comments and LIMITs in
-- subqueries are no false positives.
CREATE OR REPLACE FUNCTION pgstream_lite.top_level_limit(p_view oid)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    tree text;
    m text[];
    depth integer := 0;
    found text;
BEGIN
    SELECT r.ev_action::text INTO tree
      FROM pg_rewrite r WHERE r.ev_class = p_view AND r.rulename = '_RETURN';
    IF tree IS NULL THEN
        RETURN NULL;
    END IF;
    FOR m IN SELECT regexp_matches(tree, '(\\.)|([{}])|:(limitOffset|limitCount) (<>)?', 'g') LOOP
        IF m[2] = '{' THEN
            depth := depth + 1;
        ELSIF m[2] = '}' THEN
            depth := depth - 1;
        ELSIF m[3] IS NOT NULL AND depth = 1 AND m[4] IS NULL THEN
            -- pg_stream 0.1 checks LIMIT first
            IF m[3] = 'limitCount' THEN
                RETURN 'LIMIT';
            END IF;
            found := 'OFFSET';
        END IF;
    END LOOP;
    RETURN found;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.has_top_level_limit(p_view oid)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pgstream_lite.top_level_limit(p_view) IS NOT NULL
$$;

-- The words (keywords and unquoted identifiers, upper-cased) at parenthesis depth 0 of a query,
-- with their character positions (sql_lex: literals, quoted identifiers, dollar quotes and
-- comments are no words). Used to find the top-level SELECT, DISTINCT and FROM of a defining
-- query.
CREATE OR REPLACE FUNCTION pgstream_lite.top_level_words(p_sql text)
RETURNS TABLE (pos integer, word text) LANGUAGE sql IMMUTABLE AS $$
    SELECT x.pos, x.tok FROM pgstream_lite.sql_lex(p_sql) x
     WHERE x.depth = 0 AND x.kind = 'w' ORDER BY x.pos
$$;

-- The shape of the (view's) query, read from its parse tree in pg_rewrite, as pg_stream 0.1
-- decides whether a DIFFERENTIAL stream table gets a __pgs_count column:
--   kind 'AGGREGATE': GROUP BY or an aggregate, no window function, not a set operation;
--   kind 'DISTINCT': SELECT DISTINCT (not DISTINCT ON), not a set operation;
--   kind NULL: anything else.
-- group_attnums: the view's columns that are GROUP BY keys, in GROUP BY order (keys that are not
-- output columns are left out); has_having / has_grouping_sets: HAVING / GROUPING SETS present.
CREATE OR REPLACE FUNCTION pgstream_lite.query_shape(
    p_view oid, OUT kind text, OUT group_attnums integer[], OUT has_having boolean,
    OUT has_grouping_sets boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tree text;
    m text[];
    depth integer := 0;
    tags text[] := '{}';
    field text;                 -- the latest field of the top-level Query node
    f jsonb := '{}';            -- its scalar fields ('<>' = empty, '' = a node or list)
    te_resno integer;
    te_ref integer;
    ref_attnum jsonb := '{}';   -- ressortgroupref -> attnum, of output columns
    group_refs integer[] := '{}';
    r integer;
BEGIN
    SELECT x.ev_action::text INTO tree
      FROM pg_rewrite x WHERE x.ev_class = p_view AND x.rulename = '_RETURN';
    IF tree IS NULL THEN
        RETURN;
    END IF;
    FOR m IN SELECT regexp_matches(
                 tree, '(\\.)|\{([A-Z_]*)|(\})|:([A-Za-z_]+) ?((?:\\.|[^\s{}()\\])*)', 'g') LOOP
        IF m[1] IS NOT NULL THEN
            CONTINUE;
        ELSIF m[2] IS NOT NULL THEN
            depth := depth + 1;
            tags[depth] := m[2];
        ELSIF m[3] IS NOT NULL THEN
            depth := depth - 1;
        ELSIF depth = 1 THEN
            field := m[4];
            f := f || jsonb_build_object(m[4], m[5]);
        ELSIF depth = 2 AND field = 'targetList' AND tags[2] = 'TARGETENTRY' THEN
            IF m[4] = 'resno' THEN
                te_resno := m[5]::integer;
            ELSIF m[4] = 'ressortgroupref' THEN
                te_ref := m[5]::integer;
            ELSIF m[4] = 'resjunk' AND m[5] = 'false' AND te_ref > 0 THEN
                ref_attnum := ref_attnum || jsonb_build_object(te_ref::text, te_resno);
            END IF;
        ELSIF depth = 2 AND field = 'groupClause' AND tags[2] = 'SORTGROUPCLAUSE'
              AND m[4] = 'tleSortGroupRef' THEN
            group_refs := group_refs || m[5]::integer;
        END IF;
    END LOOP;
    has_having := coalesce(f->>'havingQual', '<>') <> '<>';
    has_grouping_sets := coalesce(f->>'groupingSets', '<>') <> '<>';
    IF coalesce(f->>'setOperations', '<>') <> '<>' THEN
        kind := NULL;
    ELSIF coalesce(f->>'distinctClause', '<>') <> '<>' AND f->>'hasDistinctOn' = 'false' THEN
        kind := 'DISTINCT';
    ELSIF (f->>'hasAggs' = 'true' OR coalesce(f->>'groupClause', '<>') <> '<>'
           OR has_grouping_sets)
          AND f->>'hasWindowFuncs' = 'false' THEN
        kind := 'AGGREGATE';
    END IF;
    group_attnums := '{}';
    FOREACH r IN ARRAY group_refs LOOP
        IF ref_attnum ? r::text
           AND NOT ((ref_attnum->>r::text)::integer = ANY (group_attnums)) THEN
            group_attnums := group_attnums || (ref_attnum->>r::text)::integer;
        END IF;
    END LOOP;
END;
$$;

-- SQL returning the columns of the probe view (of a defining query) followed by
-- `__pgs_count bigint`, the number of source rows behind each row, for a query of kind
-- 'AGGREGATE' (rows per group: count(*) added to its top-level select list, as pg_stream 0.1
-- does) or 'DISTINCT' (rows per distinct row: the query without DISTINCT, grouped by every
-- column). Each candidate is checked by creating it as a view; NULL if none fits.
CREATE OR REPLACE FUNCTION pgstream_lite.count_query(p_body text, p_kind text, p_probe oid)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_probe text := '__pgs_count_probe_' || pg_backend_pid();
    v_expected text[];
    v_got text[];
    v_cols text;
    v_sql text;
    w record;
    nxt record;
BEGIN
    SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                     ORDER BY a.attnum),
           string_agg(format('__pgs_d.%I', a.attname), ', ' ORDER BY a.attnum)
      INTO v_expected, v_cols
      FROM pg_attribute a
     WHERE a.attrelid = p_probe AND a.attnum > 0 AND NOT a.attisdropped;
    v_expected := v_expected || format('%I %s', '__pgs_count', 'bigint');
    FOR w IN SELECT t.pos, t.word FROM pgstream_lite.top_level_words(p_body) t ORDER BY t.pos LOOP
        v_sql := NULL;
        IF p_kind = 'AGGREGATE' AND w.word = 'FROM' THEN
            v_sql := rtrim(left(p_body, w.pos - 1)) || E', count(*) AS __pgs_count\n'
                     || substr(p_body, w.pos);
        ELSIF p_kind = 'DISTINCT' AND w.word = 'SELECT' THEN
            SELECT t.pos, t.word INTO nxt
              FROM pgstream_lite.top_level_words(p_body) t
             WHERE t.pos > w.pos ORDER BY t.pos LIMIT 1;
            IF nxt.word = 'DISTINCT' THEN
                v_sql := format(E'SELECT %s, count(*) AS __pgs_count\nFROM (\n%s\n) __pgs_d\n'
                                'GROUP BY %s',
                                v_cols,
                                left(p_body, nxt.pos - 1) || substr(p_body, nxt.pos + 8),
                                v_cols);
            END IF;
        END IF;
        IF v_sql IS NOT NULL THEN
            BEGIN
                EXECUTE format('DROP VIEW IF EXISTS pg_temp.%I', v_probe);
                EXECUTE format(E'CREATE TEMPORARY VIEW %I AS\n%s\n', v_probe, v_sql);
                SELECT array_agg(format('%I %s', a.attname,
                                        format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
                  INTO v_got
                  FROM pg_attribute a
                 WHERE a.attrelid = format('pg_temp.%I', v_probe)::regclass
                   AND a.attnum > 0 AND NOT a.attisdropped;
                EXECUTE format('DROP VIEW pg_temp.%I', v_probe);
                IF v_got = v_expected THEN
                    RETURN v_sql;
                END IF;
            EXCEPTION WHEN others THEN
                NULL;  -- not this one
            END;
        END IF;
        -- the DISTINCT belongs to the first top-level SELECT (after any WITH)
        EXIT WHEN p_kind = 'DISTINCT' AND w.word = 'SELECT';
    END LOOP;
    RETURN NULL;
END;
$$;

-- Relations a view (or the probe view of a defining query) reads directly, with the columns used.
CREATE OR REPLACE FUNCTION pgstream_lite.view_reads(p_view oid)
RETURNS TABLE (relid oid, columns_used text[]) LANGUAGE sql STABLE AS $$
    SELECT d.refobjid,
           array_agg(DISTINCT a.attname::text ORDER BY a.attname::text)
               FILTER (WHERE a.attname IS NOT NULL)
      FROM pg_rewrite r
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass
      JOIN pg_class c ON c.oid = d.refobjid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                              AND d.refobjsubid > 0
     WHERE r.ev_class = p_view AND d.refobjid <> p_view
     GROUP BY d.refobjid
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.source_type(p_relid oid)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables s WHERE s.pgs_relid = p_relid)
            THEN 'STREAM_TABLE'
        WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = p_relid) = 'v' THEN 'VIEW'
        ELSE 'TABLE' END
$$;

-- Every relation a defining query reads: direct ones, and through views (recursively) the tables,
-- stream tables and views behind them. Stream tables are not expanded: their own refresh
-- captures their sources.
CREATE OR REPLACE FUNCTION pgstream_lite.collect_sources(p_probe oid)
RETURNS TABLE (relid oid, source_type text, columns_used text[]) LANGUAGE sql STABLE AS $$
    WITH RECURSIVE walk (relid, columns_used, path) AS (
        SELECT v.relid, v.columns_used, ARRAY[p_probe]
          FROM pgstream_lite.view_reads(p_probe) v
        UNION ALL
        SELECT v.relid, v.columns_used, w.path || w.relid
          FROM walk w
          CROSS JOIN LATERAL pgstream_lite.view_reads(w.relid) v
         WHERE pgstream_lite.source_type(w.relid) = 'VIEW'
           AND NOT (w.relid = ANY (w.path))
           AND cardinality(w.path) < 64
    )
    SELECT w.relid, pgstream_lite.source_type(w.relid),
           (SELECT array_agg(DISTINCT col ORDER BY col)
              FROM walk w2 CROSS JOIN LATERAL unnest(w2.columns_used) col
             WHERE w2.relid = w.relid)
      FROM walk w
     GROUP BY w.relid
$$;

-- Edges of the dependency graph: what a relation reads (views: their query; stream tables: the
-- recorded dependencies).
CREATE OR REPLACE FUNCTION pgstream_lite.graph_edges(p_relid oid)
RETURNS SETOF oid LANGUAGE sql STABLE AS $$
    SELECT d.source_relid
      FROM pgstream.pgs_dependencies d
      JOIN pgstream.pgs_stream_tables s ON s.pgs_id = d.pgs_id
     WHERE s.pgs_relid = p_relid
    UNION
    SELECT v.relid FROM pgstream_lite.view_reads(p_relid) v
     WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = p_relid) IN ('v', 'm')
$$;

-- Depth-first search from p_relid; raises `cycle detected in dependency graph: a -> b -> a`.
CREATE OR REPLACE FUNCTION pgstream_lite.check_cycles(p_relid oid, p_stack oid[] DEFAULT '{}')
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    nxt oid;
    pos integer;
BEGIN
    IF cardinality(p_stack) > 100 THEN
        RETURN;
    END IF;
    FOR nxt IN SELECT pgstream_lite.graph_edges(p_relid) LOOP
        pos := array_position(p_stack || p_relid, nxt);
        IF pos IS NOT NULL THEN
            RAISE EXCEPTION 'cycle detected in dependency graph: %',
                (SELECT string_agg(pgstream_lite.relname(x), ' -> ' ORDER BY o)
                   FROM unnest(((p_stack || p_relid)[pos:]) || nxt) WITH ORDINALITY AS u(x, o));
        END IF;
        PERFORM pgstream_lite.check_cycles(nxt, p_stack || p_relid);
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Change capture.

CREATE OR REPLACE FUNCTION pgstream_lite.buffer_schema()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT pgstream_lite.setting('pg_stream.change_buffer_schema', 'pgstream_changes')
$$;

-- Advisory lock key serialising change-capture changes of one source table.
CREATE OR REPLACE FUNCTION pgstream_lite.capture_lock_key(p_relid oid)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('pgstream_lite.capture:' || p_relid::text, 0)
$$;

-- Whether a statement that changed p_rows rows of stream table storage p_relid records one
-- rescan marker (a 'T' row whose row_new is {"rescan": p_rows}) instead of the rows' images: when
-- it changed at least 100 rows and at least half of the table's rows (pg_class.reltuples, as of
-- its last VACUUM or ANALYZE; unknown: never). Its readers then re-run their query over it
-- (RECOMPUTE, 40_refresh.sql), as they do after a TRUNCATE: when an upstream refresh rewrites
-- most of a stream table (e.g. every group of a GROUP BY), rescanning it costs less than writing
-- and decoding two images per row (1,000 groups: about 8 ms of capture and 14 ms of delta, against
-- a 2 ms rescan; benchmarks/differential_refresh.py's chain). pg_stream 0.1 never captures stream
-- tables and always rescans them.
CREATE OR REPLACE FUNCTION pgstream_lite.rescan_instead(p_relid oid, p_rows bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_rows >= 100
       AND coalesce((SELECT c.reltuples >= 0 AND p_rows >= 0.5 * c.reltuples
                       FROM pg_catalog.pg_class c WHERE c.oid = p_relid), false)
$$;

-- The statements of a capture function (see ensure_capture) writing the images of transition
-- table p_table (__pgs_new or __pgs_old) as op p_op ('I' or 'D') into buffer p_buf; for stream
-- table storage (p_st), or one rescan marker instead when rescan_instead says so.
CREATE OR REPLACE FUNCTION pgstream_lite.capture_images_sql(p_buf text, p_op text, p_table text,
                                                            p_st boolean)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_st THEN format(
               E'IF pgstream_lite.rescan_instead(TG_RELID, (SELECT count(*) FROM %3$s)) THEN\n'
               '            INSERT INTO %1$s (op, row_new) '
               'SELECT ''T'', jsonb_build_object(''rescan'', count(*)) FROM %3$s;\n'
               '        ELSE\n            %4$s\n        END IF;',
               p_buf, p_op, p_table, pgstream_lite.capture_images_sql(p_buf, p_op, p_table, false))
           ELSE format('INSERT INTO %1$s (op, %2$s) SELECT %3$L, to_jsonb(r.*) FROM %4$s r;',
                       p_buf, CASE p_op WHEN 'I' THEN 'row_new' ELSE 'row_old' END, p_op, p_table)
           END
$$;

-- Start (or join) change capture of p_relid for stream table p_pgs_id.
CREATE OR REPLACE FUNCTION pgstream_lite.ensure_capture(p_relid oid, p_pgs_id bigint, p_kind text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_schema text;
    v_buffer text := 'changes_' || p_relid;
    v_fn text := 'cdc_' || p_relid;
    v_buf text;
    v_st boolean := EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables s WHERE s.pgs_relid = p_relid);
BEGIN
    -- [citus hook] a Citus table is captured by 80_citus.sql (co-located buffer, shard triggers)
    IF pgstream_lite.citus_capture(p_relid, p_pgs_id) THEN
        RETURN;
    END IF;
    -- Serialise capture set-up/tear-down per source: two transactions creating stream tables over
    -- one source at once would both create its buffer. Joining a capture that exists only needs
    -- it not to be torn down meanwhile: a shared lock, so creates over one source run in
    -- parallel. Setting it up takes the exclusive lock; the check under it then sees what another
    -- transaction committed. Both are held to the end of the transaction.
    IF EXISTS (SELECT 1 FROM pgstream_lite.capture c WHERE c.source_relid = p_relid) THEN
        PERFORM pg_advisory_xact_lock_shared(pgstream_lite.capture_lock_key(p_relid));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgstream_lite.capture c WHERE c.source_relid = p_relid) THEN
        -- (torn down between the check and the shared lock: rare; the exclusive lock below may
        -- then meet another such waiter, and PostgreSQL's deadlock detection fails one of them)
        PERFORM pg_advisory_xact_lock(pgstream_lite.capture_lock_key(p_relid));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgstream_lite.capture c WHERE c.source_relid = p_relid) THEN
        v_schema := pgstream_lite.buffer_schema();
        v_buf := format('%I.%I', v_schema, v_buffer);
        -- CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists.
        IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_schema) THEN
            EXECUTE format('CREATE SCHEMA %I', v_schema);
        END IF;
        EXECUTE format('DROP TABLE IF EXISTS %s', v_buf);
        EXECUTE format(
            'CREATE TABLE %s (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), op text NOT NULL, '
            'row_old jsonb, row_new jsonb)',
            v_buf);
        -- refreshes check for a TRUNCATE among the changes without reading the others; the
        -- index on xid comes with a second reader (ensure_xid_index)
        EXECUTE format('CREATE INDEX ON %s (xid) WHERE op = ''T''', v_buf);
        EXECUTE format('COMMENT ON TABLE %s IS %L', v_buf,
            'pgstream-lite change buffer of ' || pgstream_lite.relname(p_relid));
        IF p_kind = 'TRIGGER' THEN
            -- Statement-level triggers with transition tables: one set-based INSERT per
            -- statement (a bulk write costs about a third of per-row triggers). An UPDATE is
            -- written as its old rows (D) and new rows (I): transition tables do not pair them,
            -- and refresh reads images, not pairs. Row-level triggers where PostgreSQL refuses
            -- transition tables (e.g. inheritance children).
            EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgstream_lite.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3 SET IntervalStyle = postgres AS $body$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO %2$s (op) VALUES ('T');
    ELSIF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO %2$s (op, row_new) VALUES ('I', to_jsonb(NEW));
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO %2$s (op, row_old, row_new) VALUES ('U', to_jsonb(OLD), to_jsonb(NEW));
        ELSE
            INSERT INTO %2$s (op, row_old) VALUES ('D', to_jsonb(OLD));
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        %3$s
    ELSIF TG_OP = 'UPDATE' THEN
        %4$s
        %3$s
    ELSE
        %4$s
    END IF;
    RETURN NULL;
END;
$body$ $f$, v_fn, v_buf,
                pgstream_lite.capture_images_sql(v_buf, 'I', '__pgs_new', v_st),
                pgstream_lite.capture_images_sql(v_buf, 'D', '__pgs_old', v_st));
            BEGIN
                EXECUTE format('CREATE TRIGGER __pgs_cdc AFTER INSERT ON %s REFERENCING NEW TABLE '
                               'AS __pgs_new FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.%I()',
                               p_relid::regclass, v_fn);
                EXECUTE format('CREATE TRIGGER __pgs_cdc_update AFTER UPDATE ON %s REFERENCING '
                               'OLD TABLE AS __pgs_old NEW TABLE AS __pgs_new FOR EACH STATEMENT '
                               'EXECUTE FUNCTION pgstream_lite.%I()', p_relid::regclass, v_fn);
                EXECUTE format('CREATE TRIGGER __pgs_cdc_delete AFTER DELETE ON %s REFERENCING '
                               'OLD TABLE AS __pgs_old FOR EACH STATEMENT '
                               'EXECUTE FUNCTION pgstream_lite.%I()', p_relid::regclass, v_fn);
            EXCEPTION WHEN feature_not_supported OR wrong_object_type OR invalid_object_definition THEN
                EXECUTE format('CREATE TRIGGER __pgs_cdc AFTER INSERT OR UPDATE OR DELETE ON %s '
                               'FOR EACH ROW EXECUTE FUNCTION pgstream_lite.%I()',
                               p_relid::regclass, v_fn);
            END;
            EXECUTE format('CREATE TRIGGER __pgs_cdc_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.%I()',
                           p_relid::regclass, v_fn);
        ELSE
            v_fn := NULL;
        END IF;
        INSERT INTO pgstream_lite.capture (source_relid, kind, buffer_schema, buffer_name, trigger_function)
        VALUES (p_relid, p_kind, v_schema, v_buffer, v_fn);
    END IF;
    PERFORM pgstream_lite.ensure_xid_index(p_relid);
END;
$fn$;

-- Give the change buffer of p_relid a b-tree index on xid once two or more stream tables read
-- the source (pgs_dependencies). With one reader the buffer holds only that reader's
-- unconsumed changes plus the dead rows of its last cleanups (at most 32 pages: beyond, a
-- cleanup truncates it, truncate_consumed), so a refresh reads it whole by a sequential scan,
-- and the index would only cost writes: about 0.85 us of each captured row, 40 % of a bulk
-- INSERT's capture cost (benchmarks/capture_cost.py). Readers on different schedules make a
-- buffer hold what the slowest has not consumed; each refresh then reads its own changes (from
-- its frontier's xmin on) and each cleanup its range by the index. The buffer's lock (SHARE ROW
-- EXCLUSIVE: one creator at a time; writers of the source wait, as for CREATE INDEX) makes the
-- check and the create one step. Kept when readers go: dropping it would block writers too.
CREATE OR REPLACE FUNCTION pgstream_lite.ensure_xid_index(p_relid oid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_buf regclass;
BEGIN
    SELECT to_regclass(format('%I.%I', c.buffer_schema, c.buffer_name)) INTO v_buf
      FROM pgstream_lite.capture c
     WHERE c.source_relid = p_relid AND c.kind = 'TRIGGER';
    IF v_buf IS NULL OR pgstream_lite.has_xid_index(v_buf)
       -- a Citus buffer holds keys, claimed by key (80_citus.sql), not row images
       OR NOT EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = v_buf AND a.attname = 'row_new' AND NOT a.attisdropped)
       OR (SELECT count(DISTINCT d.pgs_id) FROM pgstream.pgs_dependencies d
            WHERE d.source_relid = p_relid) < 2 THEN
        RETURN;
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', v_buf);
    IF NOT pgstream_lite.has_xid_index(v_buf) THEN
        EXECUTE format('CREATE INDEX ON %s (xid)', v_buf);
    END IF;
END;
$$;

-- Has change buffer p_buffer a (non-partial) index led by xid?
CREATE OR REPLACE FUNCTION pgstream_lite.has_xid_index(p_buffer regclass)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = p_buffer AND a.attname = 'xid' AND i.indpred IS NULL)
$$;

-- The row images are read back into rows by DIFFERENTIAL refresh (45_delta.sql): they must not
-- depend on the writing session's settings. Floats are written exactly, intervals in one style
-- (timestamps and dates are ISO in jsonb whatever DateStyle). Capture functions made by an
-- earlier install get the same settings, and their buffers the indexes on xid (ensure_xid_index). A buffer made
-- by an earlier install loses its change_id (a sequence and a unique index written per captured row) and
-- captured_at columns: nothing reads them, and they were about a third of a bulk write's
-- capture cost (benchmarks/capture_cost.py).
DO $$
DECLARE
    f text;
BEGIN
    FOR f IN SELECT format('%I.%I', c.buffer_schema, c.buffer_name) FROM pgstream_lite.capture c
              WHERE EXISTS (SELECT 1 FROM pg_attribute a
                             WHERE a.attrelid = to_regclass(format('%I.%I', c.buffer_schema,
                                                                   c.buffer_name))
                               AND a.attname IN ('change_id', 'captured_at')
                               AND NOT a.attisdropped) LOOP
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS change_id, '
                       'DROP COLUMN IF EXISTS captured_at', f);
    END LOOP;
    PERFORM pgstream_lite.ensure_xid_index(c.source_relid) FROM pgstream_lite.capture c;
    FOR f IN SELECT format('%I.%I', c.buffer_schema, c.buffer_name) FROM pgstream_lite.capture c
              WHERE c.kind = 'TRIGGER'
                AND to_regclass(format('%I.%I', c.buffer_schema, c.buffer_name)) IS NOT NULL
                AND EXISTS (SELECT 1 FROM pg_attribute a
                             WHERE a.attrelid = to_regclass(format('%I.%I', c.buffer_schema,
                                                                   c.buffer_name))
                               AND a.attname = 'row_new')
                AND NOT EXISTS (SELECT 1 FROM pg_index i
                                 WHERE i.indrelid = to_regclass(format('%I.%I', c.buffer_schema,
                                                                       c.buffer_name))
                                   AND i.indpred IS NOT NULL) LOOP
        EXECUTE format('CREATE INDEX ON %s (xid) WHERE op = ''T''', f);
    END LOOP;
    FOR f IN SELECT c.trigger_function FROM pgstream_lite.capture c
              WHERE c.trigger_function IS NOT NULL
                AND to_regprocedure(format('pgstream_lite.%I()', c.trigger_function)) IS NOT NULL LOOP
        EXECUTE format('ALTER FUNCTION pgstream_lite.%I() SET extra_float_digits = 3', f);
        EXECUTE format('ALTER FUNCTION pgstream_lite.%I() SET IntervalStyle = postgres', f);
    END LOOP;
END;
$$;

-- Record in pgs_change_tracking that stream table p_pgs_id reads p_relid. The row of a shared
-- source stays locked until commit, so create_stream_table calls this last: creates over one
-- source then overlap for everything but this step.
CREATE OR REPLACE FUNCTION pgstream_lite.track_capture(p_relid oid, p_pgs_id bigint)
RETURNS void LANGUAGE sql AS $fn$
    INSERT INTO pgstream.pgs_change_tracking AS t (source_relid, tracked_by_pgs_ids)
    VALUES (p_relid, ARRAY[p_pgs_id])
    ON CONFLICT (source_relid) DO UPDATE
        SET tracked_by_pgs_ids = array_append(t.tracked_by_pgs_ids, p_pgs_id)
      WHERE NOT (p_pgs_id = ANY (coalesce(t.tracked_by_pgs_ids, '{}')));
$fn$;

-- Stream table p_pgs_id no longer reads p_relid: drop capture objects nobody else needs.
-- Call after the stream table's dependency rows are gone.
CREATE OR REPLACE FUNCTION pgstream_lite.release_capture(p_relid oid, p_pgs_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cap pgstream_lite.capture;
BEGIN
    PERFORM pg_advisory_xact_lock(pgstream_lite.capture_lock_key(p_relid));
    UPDATE pgstream.pgs_change_tracking t
       SET tracked_by_pgs_ids = array_remove(t.tracked_by_pgs_ids, p_pgs_id)
     WHERE t.source_relid = p_relid;
    IF EXISTS (SELECT 1 FROM pgstream.pgs_dependencies d
                WHERE d.source_relid = p_relid AND d.pgs_id <> p_pgs_id
                  AND d.source_type IN ('TABLE', 'STREAM_TABLE')) THEN
        RETURN;
    END IF;
    SELECT * INTO cap FROM pgstream_lite.capture c WHERE c.source_relid = p_relid;
    IF FOUND THEN
        IF cap.kind = 'TRIGGER' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p_relid) THEN
            EXECUTE format('DROP TRIGGER IF EXISTS __pgs_cdc ON %s', p_relid::regclass);
            EXECUTE format('DROP TRIGGER IF EXISTS __pgs_cdc_update ON %s', p_relid::regclass);
            EXECUTE format('DROP TRIGGER IF EXISTS __pgs_cdc_delete ON %s', p_relid::regclass);
            EXECUTE format('DROP TRIGGER IF EXISTS __pgs_cdc_truncate ON %s', p_relid::regclass);
        END IF;
        IF cap.trigger_function IS NOT NULL THEN
            -- on Citus, a shard moved or split away keeps a copy of the triggers until Citus's
            -- deferred cleanup drops it: CASCADE drops those copies (the live shards' triggers
            -- went with the DROP TRIGGERs above), so the drop does not wait for the cleanup
            EXECUTE format('DROP FUNCTION IF EXISTS pgstream_lite.%I()', cap.trigger_function)
                || CASE WHEN to_regclass('pg_catalog.pg_dist_shard') IS NOT NULL
                        THEN ' CASCADE' ELSE '' END;
        END IF;
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', cap.buffer_schema, cap.buffer_name);
        DELETE FROM pgstream_lite.capture c WHERE c.source_relid = p_relid;
    END IF;
    DELETE FROM pgstream.pgs_change_tracking t WHERE t.source_relid = p_relid;
END;
$$;

-- Buffers of the sources a stream table reads. Sources without a buffer (materialized views,
-- foreign tables) come back with a NULL buffer: they always count as changed.
-- distributed: a Citus buffer (citus_capture writes its cleaned_to at the top of the xid range).
DROP FUNCTION IF EXISTS pgstream_lite.st_buffers(bigint);
CREATE OR REPLACE FUNCTION pgstream_lite.st_buffers(p_pgs_id bigint)
RETURNS TABLE (source_relid oid, buffer_schema text, buffer_name text, distributed boolean)
LANGUAGE sql STABLE AS $$
    SELECT d.source_relid, c.buffer_schema, c.buffer_name,
           c.cleaned_to IS NOT DISTINCT FROM '18446744073709551615'::xid8
      FROM pgstream.pgs_dependencies d
      LEFT JOIN pgstream_lite.capture c ON c.source_relid = d.source_relid
     WHERE d.pgs_id = p_pgs_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')
$$;

-- Any captured change not yet consumed by the refresh that recorded p_frontier?
CREATE OR REPLACE FUNCTION pgstream_lite.has_changes(p_pgs_id bigint, p_frontier jsonb)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    b record;
    found_change boolean;
    snap pg_snapshot;
BEGIN
    IF p_frontier IS NULL OR p_frontier->>'snapshot' IS NULL THEN
        RETURN true;
    END IF;
    snap := (p_frontier->>'snapshot')::pg_snapshot;
    FOR b IN SELECT * FROM pgstream_lite.st_buffers(p_pgs_id) LOOP
        IF b.buffer_name IS NULL THEN
            RETURN true;
        END IF;
        -- [citus hook] a distributed buffer (80_citus.sql): read once, by the refresh's claim,
        -- not here too (each read visits every shard); an empty claim makes the refresh NO_DATA
        IF b.distributed THEN
            RETURN true;
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I x WHERE x.xid >= pg_snapshot_xmin($1) '
                       'AND NOT pg_visible_in_snapshot(x.xid, $1))',
                       b.buffer_schema, b.buffer_name)
            INTO found_change USING snap;
        IF found_change THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END;
$$;

-- Empty change buffer p_buffer with TRUNCATE when every row in it is below p_horizon (all
-- consumed), instead of deleting each row: constant time, where a DELETE costs about 0.6 us a
-- row (half of a 10,000-row GROUP BY refresh's time: benchmarks/differential_refresh.py). Only
-- for a buffer of at least 32 pages (smaller ones: the DELETE is cheap, and keeping the
-- relation keeps other sessions' plans of it), in READ COMMITTED (the check under the lock
-- then sees every committed row), when no other transaction uses the buffer now (NOWAIT: a
-- writer of the source then waits only for the rest of this transaction, never the reverse),
-- and when the role may truncate it. Returns whether it did; when not, nothing is held.
CREATE OR REPLACE FUNCTION pgstream_lite.truncate_consumed(p_buffer regclass, p_horizon xid8)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_pending boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR pg_relation_size(p_buffer) < 32 * current_setting('block_size')::bigint THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', p_buffer);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s x WHERE x.xid >= $1)', p_buffer)
           INTO v_pending USING p_horizon;
        IF v_pending THEN
            -- changes not consumed by every reader: give the lock back (the block's rollback)
            RAISE EXCEPTION USING ERRCODE = 'lock_not_available';
        END IF;
        EXECUTE format('TRUNCATE %s', p_buffer);
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END;
$$;

-- Delete buffered changes every stream table reading the source has consumed: those of
-- transactions below the smallest xmin of their frontiers. capture.cleaned_to remembers the
-- horizon of the last cleanup (every row below it is gone: such a transaction had ended before
-- every frontier, so none of its rows can come later), so a cleanup deletes the range from there
-- on and never walks the index entries of rows deleted before (until vacuum they stay); a large
-- buffer holding only consumed rows is truncated instead (truncate_consumed). A buffer another
-- refresh is cleaning (its capture row locked) is skipped.
CREATE OR REPLACE FUNCTION pgstream_lite.cleanup_buffers(p_pgs_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b record;
    horizon xid8;
    v_from xid8;
BEGIN
    FOR b IN SELECT * FROM pgstream_lite.st_buffers(p_pgs_id) s WHERE s.buffer_name IS NOT NULL LOOP
        SELECT CASE WHEN bool_and(s.frontier->>'snapshot' IS NOT NULL)
                    THEN min(pg_snapshot_xmin((s.frontier->>'snapshot')::pg_snapshot)) END
          INTO horizon
          FROM pgstream.pgs_dependencies d
          JOIN pgstream.pgs_stream_tables s ON s.pgs_id = d.pgs_id
         WHERE d.source_relid = b.source_relid;
        IF horizon IS NULL THEN
            CONTINUE;
        END IF;
        SELECT c.cleaned_to INTO v_from FROM pgstream_lite.capture c
         WHERE c.source_relid = b.source_relid FOR UPDATE SKIP LOCKED;
        IF FOUND AND (v_from IS NULL OR horizon > v_from) THEN
            IF NOT pgstream_lite.truncate_consumed(
                       format('%I.%I', b.buffer_schema, b.buffer_name)::regclass, horizon) THEN
                EXECUTE format('DELETE FROM %I.%I x WHERE x.xid >= $1 AND x.xid < $2',
                               b.buffer_schema, b.buffer_name)
                    USING coalesce(v_from, '0'::xid8), horizon;
            END IF;
            UPDATE pgstream_lite.capture c SET cleaned_to = horizon
             WHERE c.source_relid = b.source_relid;
        END IF;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Stream tables belong to the refresh engine: user INSERT/UPDATE/DELETE/TRUNCATE is rejected.
-- Refresh sets the transaction-local flag pgstream_lite.refreshing while it writes.
CREATE OR REPLACE FUNCTION pgstream_lite.guard_dml()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_name text;
    v_hint text;
BEGIN
    IF coalesce(current_setting('pgstream_lite.refreshing', true), '') <> 'on' THEN
        v_name := coalesce((SELECT s.pgs_schema || '.' || s.pgs_name
                              FROM pgstream.pgs_stream_tables s WHERE s.pgs_relid = TG_RELID),
                           TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
        v_hint := format('SELECT pgstream.refresh_stream_table(%L)', v_name);
        RAISE EXCEPTION 'invalid argument: cannot % stream table %: its content is maintained by '
                        'pgstream; change its sources, or refresh it: %', TG_OP, v_name, v_hint
            USING ERRCODE = 'insufficient_privilege', HINT = v_hint;
    END IF;
    RETURN NULL;
END;
$$;
