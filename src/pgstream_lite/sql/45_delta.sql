-- pgstream-lite: delta-based DIFFERENTIAL refresh (cost proportional to the change).
--
-- Each DIFFERENTIAL stream table gets a plan (pgstream_lite.dvm_plan, cached in st_meta.dvm) that
-- names the path its refreshes take, and why:
--   LINEAR    scan / filter / projection / inner joins (at most 3 tables): the delta of the
--             output is computed from the change buffers' old and new row images and applied
--             row by row. For tables R1..Rn (current state Ni, change Di = Di+ - Di-):
--             N1..Nn - (N1-D1)..(Nn-Dn) = sum over non-empty subsets S of (-1)^(|S|+1) times the
--             query with Ri -> Di for i in S and Ri -> Ni otherwise (inclusion-exclusion), so a
--             row joined from two changed sides is counted once. Each Di is split into its + and
--             - images: every branch has a constant sign. Bag semantics: the delta is netted per
--             row hash and the stored occurrences 1..c of a row (ids h, hash_multi(h, 2), ...)
--             stay dense: c grows or shrinks at the top.
--   KEYED     GROUP BY (no HAVING / grouping sets) or DISTINCT: the groups whose key appears in the
--             delta (old or new images, joined with the other tables' current rows and images)
--             are recomputed, with the key restriction pushed into the query, and diffed with
--             the stored rows of those groups (MIN/MAX and every other aggregate included).
--   RECOMPUTE anything else: the whole query is re-run and diffed by row id.
-- A TRUNCATE of a source in the consumed changes makes that one refresh RECOMPUTE.
--
-- Frontier (which changes a refresh consumes). The frontier is a pg_snapshot; a refresh consumes
-- the buffer rows whose writing transaction is not visible in the previous frontier. The LINEAR
-- path is not idempotent (applying a change twice doubles it), so its delta, the current state of
-- the other tables it joins with, and the new frontier all come from ONE statement: the frontier
-- is that statement's own snapshot (pg_current_snapshot() inside it), so a change committed
-- while the refresh runs is either read by it and marked consumed, or neither. The same holds
-- for FULL/RECOMPUTE (their query and frontier share a statement), so a LINEAR refresh never
-- re-applies a change a recompute already read. The KEYED path reads its keys and frontier in one
-- statement and then recomputes those groups from a possibly newer state: recomputing a group is
-- idempotent, and a newer change is consumed (its groups recomputed) by the next refresh.
-- No lock on the sources is taken: writers never wait for a refresh.

ALTER TABLE pgstream_lite.st_meta ADD COLUMN IF NOT EXISTS dvm jsonb;

-- The path each refresh took, and why (one row per history row that wrote or checked data).
CREATE TABLE IF NOT EXISTS pgstream_lite.refresh_path (
    refresh_id  bigint PRIMARY KEY
                REFERENCES pgstream.pgs_refresh_history (refresh_id) ON DELETE CASCADE,
    path        text NOT NULL,
    reason      text
);

DO $$
BEGIN
    IF to_regtype('pgstream_lite.token') IS NULL THEN
        CREATE TYPE pgstream_lite.token AS (pos integer, len integer, kind text, tok text);
    END IF;
END;
$$;

-- Tokens at parenthesis depth 0 of a query, with 1-based character positions:
-- kind 'w' word (text upper-cased), 'q' quoted identifier (text as written), '.' ',' ';',
-- '(' a whole parenthesised group, 'o' anything else (operators, numbers, string literals).
-- Comments are skipped.
CREATE OR REPLACE FUNCTION pgstream_lite.top_level_tokens(p_sql text)
RETURNS TABLE (pos integer, len integer, kind text, tok text) LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c text[] := regexp_split_to_array(coalesce(p_sql, ''), '');
    n integer;
    i integer := 1;
    j integer;
    k integer;
    depth integer;
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
        ELSIF ch = '-' AND i < n AND c[i + 1] = '-' THEN
            WHILE i <= n AND c[i] <> E'\n' LOOP i := i + 1; END LOOP;
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
        ELSIF ch IN ('''', '"') THEN
            esc := ch = '''' AND i > 1 AND c[i - 1] IN ('E', 'e')
                   AND (i = 2 OR c[i - 2] !~ '^[A-Za-z0-9_$]$');
            j := i + 1;
            WHILE j <= n LOOP
                IF esc AND c[j] = '\' THEN
                    j := j + 2;
                ELSIF c[j] = ch AND j < n AND c[j + 1] = ch THEN
                    j := j + 2;
                ELSIF c[j] = ch THEN
                    EXIT;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            j := least(j, n);
            pos := i; len := j - i + 1;
            kind := CASE WHEN ch = '"' THEN 'q' ELSE 'o' END;
            tok := array_to_string(c[i:j], '');
            RETURN NEXT;
            i := j + 1;
        ELSIF ch = '(' THEN
            -- the whole group, nested strings/comments/dollar quotes included, as one token
            depth := 0;
            j := i;
            WHILE j <= n LOOP
                IF c[j] = '(' THEN
                    depth := depth + 1;
                ELSIF c[j] = ')' THEN
                    depth := depth - 1;
                    EXIT WHEN depth = 0;
                ELSIF c[j] IN ('''', '"') THEN
                    k := j + 1;
                    WHILE k <= n AND NOT (c[k] = c[j] AND (k = n OR c[k + 1] <> c[j])) LOOP
                        k := CASE WHEN c[k] = c[j] THEN k + 2 ELSE k + 1 END;
                    END LOOP;
                    j := k;
                ELSIF c[j] = '-' AND j < n AND c[j + 1] = '-' THEN
                    WHILE j <= n AND c[j] <> E'\n' LOOP j := j + 1; END LOOP;
                ELSIF c[j] = '$' AND (j = 1 OR c[j - 1] !~ '^[A-Za-z0-9_$]$') THEN
                    k := j + 1;
                    WHILE k <= n AND c[k] ~ '^[A-Za-z0-9_]$' LOOP k := k + 1; END LOOP;
                    IF k <= n AND c[k] = '$' AND (k = j + 1 OR c[j + 1] !~ '^[0-9]$') THEN
                        tag := array_to_string(c[j:k], '');
                        cdepth := strpos(substr(p_sql, k + 1), tag);
                        j := CASE WHEN cdepth = 0 THEN n ELSE k + cdepth + length(tag) - 1 END;
                    END IF;
                END IF;
                j := j + 1;
            END LOOP;
            j := least(j, n);
            pos := i; len := j - i + 1; kind := '('; tok := array_to_string(c[i:j], '');
            RETURN NEXT;
            i := j + 1;
        ELSIF ch = '$' AND (i = 1 OR c[i - 1] !~ '^[A-Za-z0-9_$]$') THEN
            j := i + 1;
            WHILE j <= n AND c[j] ~ '^[A-Za-z0-9_]$' LOOP j := j + 1; END LOOP;
            IF j <= n AND c[j] = '$' AND (j = i + 1 OR c[i + 1] !~ '^[0-9]$') THEN
                tag := array_to_string(c[i:j], '');
                k := strpos(substr(p_sql, j + 1), tag);
                j := CASE WHEN k = 0 THEN n ELSE j + k + length(tag) - 1 END;
            ELSE
                j := i;
            END IF;
            pos := i; len := j - i + 1; kind := 'o'; tok := array_to_string(c[i:j], '');
            RETURN NEXT;
            i := j + 1;
        ELSIF ch ~ '^[A-Za-z_]$' OR ascii(ch) > 127 THEN
            j := i;
            WHILE j <= n AND (c[j] ~ '^[A-Za-z0-9_$]$' OR ascii(c[j]) > 127) LOOP j := j + 1; END LOOP;
            pos := i; len := j - i; kind := 'w'; tok := upper(array_to_string(c[i:j - 1], ''));
            RETURN NEXT;
            i := j;
        ELSIF ch ~ '^[0-9]$' THEN
            j := i;
            WHILE j <= n AND c[j] ~ '^[0-9A-Za-z_.$]$' LOOP j := j + 1; END LOOP;
            pos := i; len := j - i; kind := 'o'; tok := array_to_string(c[i:j - 1], '');
            RETURN NEXT;
            i := j;
        ELSIF ch IN ('.', ',', ';') THEN
            pos := i; len := 1; kind := ch; tok := ch;
            RETURN NEXT;
            i := i + 1;
        ELSE
            pos := i; len := 1; kind := 'o'; tok := ch;
            RETURN NEXT;
            i := i + 1;
        END IF;
    END LOOP;
END;
$$;

-- Scalar fields of the top-level Query node of a view's parse tree ('<>' = empty, '' = a node or
-- a list that is not empty).
CREATE OR REPLACE FUNCTION pgstream_lite.query_fields(p_view oid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    tree text;
    m text[];
    depth integer := 0;
    f jsonb := '{}';
BEGIN
    SELECT x.ev_action::text INTO tree
      FROM pg_rewrite x WHERE x.ev_class = p_view AND x.rulename = '_RETURN';
    IF tree IS NULL THEN
        RETURN NULL;
    END IF;
    FOR m IN SELECT regexp_matches(
                 tree, '(\\.)|(\{)[A-Z_]*|(\})|:([A-Za-z_]+) ?((?:\\.|[^\s{}()\\])*)', 'g') LOOP
        IF m[1] IS NOT NULL THEN
            CONTINUE;
        ELSIF m[2] IS NOT NULL THEN
            depth := depth + 1;
        ELSIF m[3] IS NOT NULL THEN
            depth := depth - 1;
        ELSIF depth = 1 THEN
            f := f || jsonb_build_object(m[4], m[5]);
        END IF;
    END LOOP;
    RETURN f;
END;
$$;

-- The FROM items of a query of the form SELECT ... FROM a [alias] {, | [INNER|CROSS|LEFT [OUTER]]
-- JOIN b [alias] [ON cond | USING (cols)]} [WHERE ...] [GROUP BY ...] ...: a jsonb object
-- {ok, reason, items: [{pos, len, alias, relid, left_join}]} where pos/len locate the relation
-- name in the query text and alias is the name the query refers to it by.
CREATE OR REPLACE FUNCTION pgstream_lite.from_items(p_body text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    toks pgstream_lite.token[];
    n integer;
    i integer;
    start_pos integer;
    end_pos integer;
    name_txt text;
    alias_txt text;
    last_part text;
    v_relid oid;
    items jsonb := '[]';
    left_join boolean := false;
    kw_end text[] := ARRAY['WHERE', 'GROUP', 'HAVING', 'WINDOW', 'ORDER', 'LIMIT', 'OFFSET',
                           'FETCH', 'FOR'];
    kw_join text[] := ARRAY['JOIN', 'INNER', 'LEFT', 'RIGHT', 'FULL', 'CROSS', 'NATURAL', 'ON',
                            'USING', 'LATERAL', 'TABLESAMPLE', 'ONLY'];
    k integer;
BEGIN
    SELECT array_agg(x::pgstream_lite.token ORDER BY x.pos) INTO toks FROM pgstream_lite.top_level_tokens(p_body) x;
    n := coalesce(array_length(toks, 1), 0);
    IF n = 0 OR toks[1].kind <> 'w' OR toks[1].tok <> 'SELECT' THEN
        RETURN jsonb_build_object('ok', false, 'reason', 'the query does not begin with SELECT');
    END IF;
    FOR k IN 1 .. n LOOP
        IF toks[k].kind = 'w' AND toks[k].tok IN ('UNION', 'INTERSECT', 'EXCEPT') THEN
            RETURN jsonb_build_object('ok', false, 'reason', 'set operation ' || toks[k].tok);
        END IF;
    END LOOP;
    i := 1;
    WHILE i <= n AND NOT (toks[i].kind = 'w' AND toks[i].tok = 'FROM') LOOP i := i + 1; END LOOP;
    IF i > n THEN
        RETURN jsonb_build_object('ok', false, 'reason', 'no top-level FROM');
    END IF;
    i := i + 1;
    LOOP
        -- a relation name: ident [. ident [. ident]]
        IF i > n OR toks[i].kind NOT IN ('w', 'q')
           OR (toks[i].kind = 'w' AND toks[i].tok = ANY (kw_join || kw_end)) THEN
            RETURN jsonb_build_object('ok', false, 'reason',
                'a FROM item that is not a plain table name (subquery, function, LATERAL, ONLY)');
        END IF;
        start_pos := toks[i].pos;
        end_pos := toks[i].pos + toks[i].len - 1;
        last_part := substr(p_body, toks[i].pos, toks[i].len);
        i := i + 1;
        WHILE i + 1 <= n AND toks[i].kind = '.' AND toks[i + 1].kind IN ('w', 'q') LOOP
            end_pos := toks[i + 1].pos + toks[i + 1].len - 1;
            last_part := substr(p_body, toks[i + 1].pos, toks[i + 1].len);
            i := i + 2;
        END LOOP;
        name_txt := substr(p_body, start_pos, end_pos - start_pos + 1);
        IF i <= n AND toks[i].kind IN ('(', '.') THEN
            RETURN jsonb_build_object('ok', false, 'reason', 'a function in FROM');
        END IF;
        alias_txt := NULL;
        IF i <= n AND toks[i].kind = 'w' AND toks[i].tok = 'AS' THEN
            i := i + 1;
        END IF;
        IF i <= n AND (toks[i].kind = 'q' OR (toks[i].kind = 'w'
                       AND NOT toks[i].tok = ANY (kw_join || kw_end))) THEN
            alias_txt := substr(p_body, toks[i].pos, toks[i].len);
            i := i + 1;
            IF i <= n AND toks[i].kind = '(' THEN
                RETURN jsonb_build_object('ok', false, 'reason', 'column aliases in FROM');
            END IF;
        END IF;
        BEGIN
            v_relid := name_txt::regclass;
        EXCEPTION WHEN others THEN
            RETURN jsonb_build_object('ok', false, 'reason', 'cannot resolve ' || name_txt);
        END;
        items := items || jsonb_build_object('pos', start_pos, 'len', end_pos - start_pos + 1,
                                             'name', name_txt,
                                             'alias', coalesce(alias_txt, last_part),
                                             'has_alias', alias_txt IS NOT NULL,
                                             'relid', v_relid, 'left_join', left_join);
        -- what follows: ON/USING condition, then a separator
        IF i <= n AND toks[i].kind = 'w' AND toks[i].tok = 'USING' THEN
            i := i + 2;
        ELSIF i <= n AND toks[i].kind = 'w' AND toks[i].tok = 'ON' THEN
            i := i + 1;
            WHILE i <= n AND toks[i].kind <> ','
                  AND NOT (toks[i].kind = 'w' AND toks[i].tok = ANY (kw_join || kw_end)) LOOP
                i := i + 1;
            END LOOP;
        END IF;
        IF i > n OR (toks[i].kind = 'w' AND toks[i].tok = ANY (kw_end)) OR toks[i].kind = ';' THEN
            EXIT;
        END IF;
        left_join := false;
        IF toks[i].kind = ',' THEN
            i := i + 1;
        ELSIF toks[i].kind = 'w' AND toks[i].tok = 'JOIN' THEN
            i := i + 1;
        ELSIF toks[i].kind = 'w' AND toks[i].tok IN ('INNER', 'CROSS') AND i < n
              AND toks[i + 1].tok = 'JOIN' THEN
            i := i + 2;
        ELSIF toks[i].kind = 'w' AND toks[i].tok = 'LEFT' THEN
            left_join := true;
            i := i + 1;
            IF i <= n AND toks[i].tok = 'OUTER' THEN i := i + 1; END IF;
            IF i > n OR toks[i].tok <> 'JOIN' THEN
                RETURN jsonb_build_object('ok', false, 'reason', 'unexpected text in FROM');
            END IF;
            i := i + 1;
        ELSE
            RETURN jsonb_build_object('ok', false, 'reason',
                'a FROM clause with ' || coalesce(toks[i].tok, '?')
                || ' (only inner, cross and left joins of tables are handled)');
        END IF;
    END LOOP;
    RETURN jsonb_build_object('ok', true, 'items', items);
END;
$$;

-- The refresh plan of a DIFFERENTIAL stream table: jsonb {path, reason, items, keys, key_types}
-- (see the top of this file). Evaluated in the table's search_path (the caller sets it), by
-- reading the defining query's parse tree through a temporary probe view.
CREATE OR REPLACE FUNCTION pgstream_lite.dvm_plan(p_pgs_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    v_relid oid;
    v_probe text := '__pgs_dvm_probe_' || pg_backend_pid();
    v_probe_oid oid;
    fi jsonb;
    f jsonb;
    shape record;
    bad record;
    v_keys text[];
    v_types text[];
    n_items integer;
    v_src oid[];
    v_items oid[];
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    SELECT s.pgs_relid INTO v_relid FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    fi := pgstream_lite.from_items(m.body);
    IF NOT (fi->>'ok')::boolean THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', fi->>'reason');
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS pg_temp.%I', v_probe);
    EXECUTE format(E'CREATE TEMPORARY VIEW %I AS\n%s\n', v_probe, m.body);
    v_probe_oid := format('pg_temp.%I', v_probe)::regclass;
    f := pgstream_lite.query_fields(v_probe_oid);
    shape := pgstream_lite.query_shape(v_probe_oid);
    SELECT array_agg(s.relid ORDER BY s.relid) INTO v_src
      FROM pgstream_lite.collect_sources(v_probe_oid) s;
    SELECT s.relid, s.source_type INTO bad
      FROM pgstream_lite.collect_sources(v_probe_oid) s
      LEFT JOIN pgstream_lite.capture c ON c.source_relid = s.relid AND c.kind = 'TRIGGER'
     WHERE s.source_type <> 'TABLE' OR c.source_relid IS NULL
     LIMIT 1;
    EXECUTE format('DROP VIEW pg_temp.%I', v_probe);
    SELECT array_agg(DISTINCT (x->>'relid')::oid ORDER BY (x->>'relid')::oid),
           count(*)
      INTO v_items, n_items
      FROM jsonb_array_elements(fi->'items') x;
    IF coalesce(f->>'cteList', '<>') <> '<>' THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'WITH (common table expressions)');
    ELSIF f->>'hasSubLinks' = 'true' THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'a subquery expression');
    ELSIF f->>'hasWindowFuncs' = 'true' THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'a window function');
    ELSIF coalesce(f->>'setOperations', '<>') <> '<>' THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'a set operation');
    ELSIF f->>'hasDistinctOn' = 'true' THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'DISTINCT ON');
    ELSIF bad.relid IS NOT NULL THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason',
            format('reads %s %s, whose changes are not captured row by row',
                   lower(replace(bad.source_type, '_', ' ')), pgstream_lite.relname(bad.relid)));
    ELSIF v_src IS DISTINCT FROM v_items THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason',
                                  'reads a table outside its FROM clause');
    ELSIF n_items > 3 THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'joins more than 3 tables');
    END IF;
    IF shape.kind IN ('AGGREGATE', 'DISTINCT') THEN
        IF shape.has_having THEN
            RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'HAVING');
        ELSIF shape.has_grouping_sets THEN
            RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'GROUPING SETS');
        END IF;
        IF shape.kind = 'DISTINCT' THEN
            v_keys := m.columns;
        ELSE
            SELECT array_agg(m.columns[a] ORDER BY o) INTO v_keys
              FROM unnest(shape.group_attnums) WITH ORDINALITY AS u(a, o);
        END IF;
        IF coalesce(cardinality(v_keys), 0) = 0 THEN
            RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason',
                                      'an aggregate without GROUP BY keys among its columns');
        END IF;
        SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY o) INTO v_types
          FROM unnest(v_keys) WITH ORDINALITY AS u(k, o)
          JOIN pg_attribute a ON a.attrelid = v_relid AND a.attname = u.k;
        IF cardinality(v_types) <> cardinality(v_keys) THEN
            RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'key columns not found');
        END IF;
        RETURN jsonb_build_object(
            'path', 'KEYED',
            'reason', format('%s: recompute the groups whose key (%s) the change touches',
                             CASE WHEN shape.kind = 'DISTINCT' THEN 'DISTINCT'
                                  ELSE 'GROUP BY' END,
                             array_to_string(v_keys, ', ')),
            'items', fi->'items', 'keys', to_jsonb(v_keys), 'key_types', to_jsonb(v_types));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(fi->'items') x
                WHERE (x->>'left_join')::boolean) THEN
        RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'a LEFT JOIN');
    END IF;
    RETURN jsonb_build_object(
        'path', 'LINEAR',
        'reason', CASE WHEN n_items = 1 THEN 'scan/filter/projection of one table: delta of its '
                                             'changed rows'
                       ELSE format('inner join of %s tables: delta of each side joined with the '
                                   'others (inclusion-exclusion)', n_items) END,
        'items', fi->'items');
END;
$$;

-- The query text with FROM items replaced: p_repl[k] (NULL: keep) replaces the relation name of
-- item k, keeping the name it is referred to by.
CREATE OR REPLACE FUNCTION pgstream_lite.subst_items(p_body text, p_items jsonb, p_repl text[])
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    r text := p_body;
    it record;
BEGIN
    FOR it IN SELECT x.v, x.o FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(v, o)
               ORDER BY (x.v->>'pos')::integer DESC LOOP
        IF p_repl[it.o] IS NOT NULL THEN
            r := left(r, (it.v->>'pos')::integer - 1)
                 || p_repl[it.o]
                 || CASE WHEN (it.v->>'has_alias')::boolean THEN ''
                         ELSE ' AS ' || (it.v->>'alias') END
                 || substr(r, (it.v->>'pos')::integer + (it.v->>'len')::integer);
        END IF;
    END LOOP;
    RETURN r;
END;
$$;

-- SQL of the row images of p_relid's changes not visible in snapshot p_prev: which '+' new images
-- (INSERT, UPDATE), '-' old images (UPDATE, DELETE), '*' both.
-- The images are gathered into one jsonb array and expanded by jsonb_populate_recordset, whose
-- row estimate (100) keeps the planner on index probes for the small deltas that are the common
-- case: the buffer table's own statistics are usually stale (it is emptied after each refresh).
CREATE OR REPLACE FUNCTION pgstream_lite.delta_images_sql(p_relid oid, p_prev text, p_which text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format(
        'SELECT __pgs_r.* FROM jsonb_populate_recordset(NULL::%s, (SELECT coalesce(jsonb_agg(%s), '
        '''[]'') FROM %I.%I __pgs_x %s WHERE %s AND NOT pg_visible_in_snapshot(__pgs_x.xid, '
        '%L::pg_snapshot))) __pgs_r',
        p_relid::regclass,
        CASE p_which WHEN '+' THEN '__pgs_x.row_new' WHEN '-' THEN '__pgs_x.row_old'
                     ELSE '__pgs_i.j' END,
        c.buffer_schema, c.buffer_name,
        CASE WHEN p_which = '*' THEN 'CROSS JOIN LATERAL (VALUES (__pgs_x.row_old), '
                                     '(__pgs_x.row_new)) __pgs_i (j)' ELSE '' END,
        CASE p_which WHEN '+' THEN '__pgs_x.op IN (''I'', ''U'')'
                     WHEN '-' THEN '__pgs_x.op IN (''U'', ''D'')'
                     ELSE '__pgs_i.j IS NOT NULL' END,
        p_prev)
      FROM pgstream_lite.capture c WHERE c.source_relid = p_relid
$$;

-- SQL selecting p_relid's buffered changes not visible in p_prev that have images `p_which`.
CREATE OR REPLACE FUNCTION pgstream_lite.delta_exists_sql(p_relid oid, p_prev text, p_which text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('SELECT 1 FROM %I.%I __pgs_x WHERE __pgs_x.op IN %s '
                  'AND NOT pg_visible_in_snapshot(__pgs_x.xid, %L::pg_snapshot)',
                  c.buffer_schema, c.buffer_name,
                  CASE p_which WHEN '+' THEN '(''I'', ''U'')' ELSE '(''U'', ''D'')' END, p_prev)
      FROM pgstream_lite.capture c WHERE c.source_relid = p_relid
$$;

-- SQL: is there a TRUNCATE of one of p_relids not visible in snapshot p_prev?
CREATE OR REPLACE FUNCTION pgstream_lite.truncated_sql(p_relids oid[], p_prev text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(format(
        'EXISTS (SELECT 1 FROM %I.%I __pgs_x WHERE __pgs_x.op = ''T'' '
        'AND NOT pg_visible_in_snapshot(__pgs_x.xid, %L::pg_snapshot))',
        c.buffer_schema, c.buffer_name, p_prev), ' OR '), 'false')
      FROM pgstream_lite.capture c WHERE c.source_relid = ANY (p_relids)
$$;

-- LINEAR refresh (see the top of this file): one statement computes the delta, applies it to
-- p_storage and returns the counts, the statement's snapshot (the new frontier) and whether a
-- consumed change is a TRUNCATE (then nothing is written: the caller recomputes instead).
CREATE OR REPLACE FUNCTION pgstream_lite.refresh_linear(
    p_pgs_id bigint, p_storage text, p_plan jsonb, p_prev text,
    OUT ins bigint, OUT del bigint, OUT snap text, OUT truncated boolean)
LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    items jsonb := p_plan->'items';
    n integer := jsonb_array_length(p_plan->'items');
    relids oid[];
    rel_idx integer[];
    ctes text := '';
    branches text[] := '{}';
    states integer[];
    repl text[];
    gates text[];
    v_sign integer;
    v_size integer;
    mask integer;
    k integer;
    x integer;
    q_cols text;
    b_cols text;
    z_cols text;
    v_cols text;
    v_sql text;
    nonempty boolean[];
    v_attempt integer := 0;
    v_flag text;
    v_used text[];
    guards text[];
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta s WHERE s.pgs_id = p_pgs_id;
    SELECT array_agg(DISTINCT (v->>'relid')::oid) INTO relids FROM jsonb_array_elements(items) v;
    SELECT array_agg(array_position(relids, (v->>'relid')::oid) ORDER BY o) INTO rel_idx
      FROM jsonb_array_elements(items) WITH ORDINALITY AS u(v, o);
    FOR k IN 1 .. cardinality(relids) LOOP
        ctes := ctes || format(E'__pgs_p%s AS MATERIALIZED (%s),\n__pgs_m%s AS MATERIALIZED (%s),\n',
                               k, pgstream_lite.delta_images_sql(relids[k], p_prev, '+'),
                               k, pgstream_lite.delta_images_sql(relids[k], p_prev, '-'));
    END LOOP;
    SELECT string_agg(format('__pgs_q.%I', c), ', ' ORDER BY o),
           string_agg(format('b.%I', c), ', ' ORDER BY o),
           string_agg(format('z.%I', c), ', ' ORDER BY o),
           string_agg(format('%I', c), ', ' ORDER BY o)
      INTO q_cols, b_cols, z_cols, v_cols
      FROM unnest(m.columns) WITH ORDINALITY AS u(c, o);
    <<attempt>>
    LOOP
    v_attempt := v_attempt + 1;
    -- Which image sets are empty: their branches are left out (a 3-table join then plans 2
    -- branches, not 26, for a change of one table). A set found empty here but filled by a
    -- commit before the refresh statement's snapshot would be lost, so that statement checks
    -- again, writes nothing if so (flag 'R') and the refresh is built again; after a few such
    -- races every branch is kept.
    IF v_attempt <= 3 THEN
        EXECUTE 'SELECT ARRAY[' || (SELECT string_agg(format(
                    'EXISTS (%s LIMIT 1), EXISTS (%s LIMIT 1)',
                    pgstream_lite.delta_exists_sql(r, p_prev, '+'),
                    pgstream_lite.delta_exists_sql(r, p_prev, '-')), ', ' ORDER BY o)
                  FROM unnest(relids) WITH ORDINALITY AS u(r, o)) || ']'
            INTO nonempty;
    ELSE
        nonempty := array_fill(true, ARRAY[2 * cardinality(relids)]);
    END IF;
    guards := '{}';
    FOR k IN 1 .. cardinality(relids) LOOP
        IF NOT nonempty[2 * k - 1] THEN
            guards := guards || format('EXISTS (%s LIMIT 1)',
                                       pgstream_lite.delta_exists_sql(relids[k], p_prev, '+'));
        END IF;
        IF NOT nonempty[2 * k] THEN
            guards := guards || format('EXISTS (%s LIMIT 1)',
                                       pgstream_lite.delta_exists_sql(relids[k], p_prev, '-'));
        END IF;
    END LOOP;
    branches := '{}';
    -- every assignment of {current, +images, -images} to the items but all-current
    <<branch>>
    FOR mask IN 1 .. (3 ^ n)::integer - 1 LOOP
        states := '{}'; repl := '{}'; gates := '{}';
        x := mask; v_size := 0; v_sign := 1;
        FOR k IN 1 .. n LOOP
            states[k] := x % 3;
            x := x / 3;
            IF states[k] = 1 THEN
                repl[k] := '__pgs_p' || rel_idx[k];
            ELSIF states[k] = 2 THEN
                repl[k] := '__pgs_m' || rel_idx[k];
                v_sign := -v_sign;
            END IF;
            IF states[k] > 0 AND NOT nonempty[2 * rel_idx[k] - 2 + states[k]] THEN
                CONTINUE branch;
            END IF;
            IF states[k] > 0 THEN
                v_size := v_size + 1;
                gates := gates || format('EXISTS (SELECT 1 FROM %s)', repl[k]);
            END IF;
        END LOOP;
        IF v_size % 2 = 0 THEN
            v_sign := -v_sign;
        END IF;
        branches := branches || format(
            E'SELECT %s, %s AS __pgs_sign FROM (\n%s\n) __pgs_q WHERE %s',
            q_cols, v_sign, pgstream_lite.subst_items(m.body, items, repl),
            array_to_string(gates, ' AND '));
    END LOOP;
    IF cardinality(branches) = 0 THEN
        branches := ARRAY[format(E'SELECT %s, 0 AS __pgs_sign FROM (\n%s\n) __pgs_q WHERE false',
                                 q_cols, m.body)];
    END IF;
    v_sql := format(
        E'WITH RECURSIVE %s'
        '__pgs_t AS MATERIALIZED (SELECT CASE WHEN %s THEN ''T'' WHEN %s THEN ''R'' END AS t),\n'
        '__pgs_b AS (\n%s\n),\n'
        '__pgs_h AS (SELECT b.*, pgstream.pg_stream_hash(ROW(%s)::text) AS __pgs_h FROM __pgs_b b),\n'
        '__pgs_net AS MATERIALIZED (SELECT * FROM (SELECT DISTINCT ON (w.__pgs_h) w.*, '
        'sum(w.__pgs_sign) OVER (PARTITION BY w.__pgs_h) AS __pgs_n FROM __pgs_h w) y '
        'WHERE y.__pgs_n <> 0),\n'
        -- probes of the stored ids: scalar subqueries, so always index look-ups (never a
        -- join that reads the whole storage table)
        '__pgs_probe (h, i) AS (SELECT z.__pgs_h, 1 FROM __pgs_net z WHERE '
        '(SELECT true FROM %s t WHERE t.__pgs_row_id = z.__pgs_h LIMIT 1) '
        'UNION ALL SELECT p.h, p.i + 1 FROM __pgs_probe p WHERE (SELECT true FROM %s t '
        'WHERE t.__pgs_row_id = pgstream.pg_stream_hash_multi(ARRAY[p.h::text, (p.i + 1)::text]) '
        'LIMIT 1)),\n'
        '__pgs_cnt AS (SELECT p.h, max(p.i) AS c FROM __pgs_probe p GROUP BY p.h),\n'
        '__pgs_c AS MATERIALIZED (SELECT z.*, coalesce(c.c, 0) AS __pgs_c FROM __pgs_net z '
        'LEFT JOIN __pgs_cnt c ON c.h = z.__pgs_h WHERE (SELECT t FROM __pgs_t) IS NULL),\n'
        '__pgs_del AS (DELETE FROM %s t WHERE t.__pgs_row_id = ANY (ARRAY(SELECT CASE WHEN o = 1 '
        'THEN z.__pgs_h ELSE pgstream.pg_stream_hash_multi(ARRAY[z.__pgs_h::text, o::text]) END '
        'FROM __pgs_c z CROSS JOIN LATERAL generate_series(z.__pgs_c + z.__pgs_n + 1, z.__pgs_c) o '
        'WHERE z.__pgs_n < 0)) RETURNING 1),\n'
        '__pgs_ins AS (INSERT INTO %s (__pgs_row_id, %s) SELECT CASE WHEN o = 1 THEN z.__pgs_h '
        'ELSE pgstream.pg_stream_hash_multi(ARRAY[z.__pgs_h::text, o::text]) END, %s '
        'FROM __pgs_c z CROSS JOIN LATERAL generate_series(z.__pgs_c + 1, z.__pgs_c + z.__pgs_n) o '
        'WHERE z.__pgs_n > 0 RETURNING 1)\n'
        'SELECT (SELECT count(*) FROM __pgs_ins), (SELECT count(*) FROM __pgs_del), '
        'pg_current_snapshot()::text, (SELECT t FROM __pgs_t)',
        ctes, pgstream_lite.truncated_sql(relids, p_prev),
        coalesce(nullif(array_to_string(guards, ' OR '), ''), 'false'),
        array_to_string(branches, E'\nUNION ALL\n'), b_cols,
        p_storage, p_storage, p_storage, p_storage, v_cols, z_cols);
    IF current_setting('pgstream_lite.debug', true) = 'on' THEN
        RAISE NOTICE 'pgstream-lite LINEAR refresh: %', v_sql;
    END IF;
    EXECUTE v_sql INTO ins, del, snap, v_flag;
    EXIT attempt WHEN v_flag IS DISTINCT FROM 'R';
    END LOOP;
    truncated := v_flag IS NOT DISTINCT FROM 'T';
END;
$$;

-- KEYED refresh (see the top of this file). Statement 1 reads the keys of the groups the
-- consumed changes touch and the new frontier (its snapshot); statement 2 recomputes those groups
-- (key restriction pushed into the query) and diffs them with the stored rows by row id.
CREATE OR REPLACE FUNCTION pgstream_lite.refresh_keyed(
    p_pgs_id bigint, p_storage text, p_plan jsonb, p_prev text,
    OUT ins bigint, OUT del bigint, OUT snap text, OUT truncated boolean)
LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    items jsonb := p_plan->'items';
    n integer := jsonb_array_length(p_plan->'items');
    keys text[] := ARRAY(SELECT jsonb_array_elements_text(p_plan->'keys'));
    key_types text[] := ARRAY(SELECT jsonb_array_elements_text(p_plan->'key_types'));
    relids oid[];
    rel_idx integer[];
    ctes text := '';
    branches text[] := '{}';
    repl text[];
    aggs text;
    k integer;
    j integer;
    res text[];
    v_any boolean;
    conds_q text[] := '{}';
    conds_t text[] := '{}';
    v_cols text;
    v_src_cols text;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta s WHERE s.pgs_id = p_pgs_id;
    SELECT array_agg(DISTINCT (v->>'relid')::oid) INTO relids FROM jsonb_array_elements(items) v;
    SELECT array_agg(array_position(relids, (v->>'relid')::oid) ORDER BY o) INTO rel_idx
      FROM jsonb_array_elements(items) WITH ORDINALITY AS u(v, o);
    FOR k IN 1 .. cardinality(relids) LOOP
        ctes := ctes || format(E'__pgs_d%s AS MATERIALIZED (%s),\n',
                               k, pgstream_lite.delta_images_sql(relids[k], p_prev, '*'));
    END LOOP;
    -- item k's changed rows joined with the others' current rows and changed rows (old and new
    -- states both covered: every group a changed row belonged to or belongs to is found)
    FOR k IN 1 .. n LOOP
        repl := '{}';
        FOR j IN 1 .. n LOOP
            repl[j] := CASE WHEN j = k THEN '__pgs_d' || rel_idx[j]
                            ELSE format('(SELECT * FROM %s UNION ALL SELECT * FROM __pgs_d%s)',
                                        items->(j - 1)->>'name', rel_idx[j]) END;
        END LOOP;
        branches := branches || format(
            E'SELECT %s FROM (\n%s\n) __pgs_q WHERE EXISTS (SELECT 1 FROM __pgs_d%s)',
            (SELECT string_agg(format('__pgs_q.%I', c), ', ' ORDER BY o)
               FROM unnest(keys) WITH ORDINALITY AS u(c, o)),
            pgstream_lite.subst_items(m.body, items, repl), rel_idx[k]);
    END LOOP;
    SELECT string_agg(format('array_agg(DISTINCT k.%I::text) FILTER (WHERE k.%I IS NOT NULL)::text, '
                             'coalesce(bool_or(k.%I IS NULL), false)::text', c, c, c), ', '
                      ORDER BY o)
      INTO aggs FROM unnest(keys) WITH ORDINALITY AS u(c, o);
    EXECUTE format(E'WITH %s__pgs_k AS (\n%s\n)\n'
                   'SELECT ARRAY[pg_current_snapshot()::text, (%s)::text, count(*)::text, %s] '
                   'FROM __pgs_k k',
                   ctes, array_to_string(branches, E'\nUNION ALL\n'),
                   pgstream_lite.truncated_sql(relids, p_prev), aggs)
        INTO res;
    snap := res[1];
    truncated := res[2]::boolean;
    ins := 0;
    del := 0;
    IF truncated OR res[3]::bigint = 0 THEN
        RETURN;
    END IF;
    FOR k IN 1 .. cardinality(keys) LOOP
        v_any := res[3 + 2 * k]::boolean;
        conds_q := conds_q || format('(%s%s)',
            CASE WHEN res[2 + 2 * k] IS NULL THEN 'false'
                 ELSE format('__pgs_q.%I = ANY (%L::text[]::%s[])', keys[k], res[2 + 2 * k],
                             key_types[k]) END,
            CASE WHEN v_any THEN format(' OR __pgs_q.%I IS NULL', keys[k]) ELSE '' END);
        conds_t := conds_t || format('(%s%s)',
            CASE WHEN res[2 + 2 * k] IS NULL THEN 'false'
                 ELSE format('t.%I = ANY (%L::text[]::%s[])', keys[k], res[2 + 2 * k],
                             key_types[k]) END,
            CASE WHEN v_any THEN format(' OR t.%I IS NULL', keys[k]) ELSE '' END);
    END LOOP;
    SELECT string_agg(format('%I', c), ', ' ORDER BY o),
           string_agg(format('src.%I', c), ', ' ORDER BY o)
      INTO v_cols, v_src_cols
      FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o);
    EXECUTE format(
        E'WITH src AS MATERIALIZED (\n%s\n),\n'
        'cur AS MATERIALIZED (SELECT t.__pgs_row_id FROM %s t WHERE %s),\n'
        'del AS (DELETE FROM %s t WHERE t.__pgs_row_id = ANY (ARRAY(SELECT cur.__pgs_row_id '
        'FROM cur WHERE NOT EXISTS (SELECT 1 FROM src WHERE src.__pgs_row_id = cur.__pgs_row_id))) '
        'RETURNING 1),\n'
        'ins AS (INSERT INTO %s (__pgs_row_id, %s) SELECT src.__pgs_row_id, %s FROM src '
        'WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.__pgs_row_id = src.__pgs_row_id) '
        'RETURNING 1)\n'
        'SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del)',
        pgstream_lite.rows_sql_from(p_pgs_id, format(
            E'SELECT * FROM (\n%s\n) __pgs_q WHERE %s',
            coalesce(m.count_query, m.body), array_to_string(conds_q, ' AND '))),
        p_storage, array_to_string(conds_t, ' AND '), p_storage, p_storage, v_cols, v_src_cols)
        INTO ins, del;
END;
$$;

-- The cached plan of a stream table (computed on first use, in the table's search_path).
CREATE OR REPLACE FUNCTION pgstream_lite.st_plan(p_pgs_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_plan jsonb;
    v_path text;
    v_old_path text := current_setting('search_path');
BEGIN
    SELECT m.dvm, m.search_path INTO v_plan, v_path
      FROM pgstream_lite.st_meta m WHERE m.pgs_id = p_pgs_id;
    IF v_plan IS NULL AND v_path IS NOT NULL THEN
        PERFORM set_config('search_path', v_path, true);
        BEGIN
            v_plan := pgstream_lite.dvm_plan(p_pgs_id);
        EXCEPTION WHEN others THEN
            -- e.g. a source dropped: the refresh reports it; nothing is cached
            PERFORM set_config('search_path', v_old_path, true);
            RETURN jsonb_build_object('path', 'RECOMPUTE', 'reason', 'cannot plan: ' || SQLERRM);
        END;
        PERFORM set_config('search_path', v_old_path, true);
        UPDATE pgstream_lite.st_meta m SET dvm = v_plan WHERE m.pgs_id = p_pgs_id;
    END IF;
    RETURN v_plan;
END;
$$;
