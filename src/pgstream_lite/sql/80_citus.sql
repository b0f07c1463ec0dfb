-- pgstream-lite on Citus (issue 15; docs/citus.md). Inert where the citus extension is absent:
-- each hook (marked [citus hook] in 30/40/60) returns NULL or false at once for a table that is
-- not a Citus table or a stream table that reads none (citus_table_kind, st_meta.citus).
--
-- Change capture of a distributed source: statement-level triggers on its shards write the
-- distribution keys a statement touched straight into the co-located shard of a change buffer
-- that is itself distributed and co-located with the source, so capture never leaves the node
-- that holds the row (a write cannot fail for want of a buffer elsewhere, as pg_trickle's did).
-- A buffer row says "stream table pgs_id must recompute key k" ('T': everything, a TRUNCATE).
-- A refresh claims its rows with DELETE ... RETURNING inside its own transaction: what it did
-- not see stays for the next one, on every node, without any cross-node snapshot.

-- Per stream table: where its storage lives on Citus (NULL: not decided / not on Citus).
ALTER TABLE pgstream_lite.st_meta ADD COLUMN IF NOT EXISTS citus jsonb;

-- 'distributed' (hash-distributed), 'reference', 'other' (e.g. Citus-local) or NULL (not a
-- Citus table, or no Citus).
CREATE OR REPLACE FUNCTION pgstream_lite.citus_table_kind(p_relid oid)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v text;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    -- static SQL (PL/pgSQL resolves it when first run, which happens only with Citus there):
    -- its plan is kept for the session; EXECUTE planned it at each of a refresh's ~4 calls
    SELECT CASE WHEN p.partmethod = 'h' THEN 'distributed'
                WHEN p.partmethod = 'n' AND p.repmodel = 't' THEN 'reference' ELSE 'other' END
      INTO v FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = p_relid;
    RETURN v;
END;
$$;

-- The distribution column of a hash-distributed table (name and type), else NULLs.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_dist_column(p_relid oid, OUT col_name text,
                                                           OUT col_type text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF pgstream_lite.citus_table_kind(p_relid) IS DISTINCT FROM 'distributed' THEN
        RETURN;
    END IF;
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) INTO col_name, col_type
      FROM pg_catalog.pg_dist_partition p
      JOIN pg_attribute a ON a.attrelid = p.logicalrelid
       AND a.attname = column_to_column_name(p.logicalrelid, p.partkey)
     WHERE p.logicalrelid = p_relid;
END;
$$;

-- The distributed source whose distribution column names the stream table's keys (NULL when
-- it reads none): among its distributed sources, the first whose distribution column is an
-- output column, else the first. Raises when they are not co-located with each other: their
-- keys would not be comparable, and Citus joins them only by repartitioning.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_source(p_pgs_id bigint)
RETURNS oid LANGUAGE plpgsql STABLE AS $$
DECLARE
    v oid[];
    v_groups integer;
    m pgstream_lite.st_meta;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    SELECT array_agg(d.source_relid ORDER BY
                     (pgstream_lite.citus_dist_column(d.source_relid)).col_name
                         = ANY (pgstream_lite.stored_columns(m)) DESC, d.source_relid)
      INTO v FROM pgstream.pgs_dependencies d
     WHERE d.pgs_id = p_pgs_id AND pgstream_lite.citus_table_kind(d.source_relid) = 'distributed';
    IF coalesce(cardinality(v), 0) > 1 THEN
        EXECUTE 'SELECT count(DISTINCT p.colocationid) FROM pg_catalog.pg_dist_partition p '
                'WHERE p.logicalrelid = ANY ($1::regclass[])' INTO v_groups USING v;
        IF v_groups > 1 THEN
            RAISE EXCEPTION 'unsupported operator for Citus: stream table % reads distributed '
                            'tables that are not co-located (%); pgstream-lite reads distributed '
                            'tables co-located with each other (create_distributed_table(..., '
                            'colocate_with => ...)) plus reference tables',
                            pgstream_lite.st_qname(p_pgs_id),
                            (SELECT string_agg(x::regclass::text, ', ') FROM unnest(v) x);
        END IF;
    END IF;
    RETURN v[1];
END;
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.st_qname(p_pgs_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT s.pgs_schema || '.' || s.pgs_name FROM pgstream.pgs_stream_tables s
     WHERE s.pgs_id = p_pgs_id
$$;

-- The (re)generated capture trigger function of distributed source p_relid: writes the keys of
-- each statement's rows, once per consuming stream table, into the co-located buffer shard.
-- The shard a trigger fires on is named <table>_<shardid>; the buffer shard holding the same
-- hash range sits on the same node (co-location), found in Citus's metadata (on every node).
-- On the coordinator's shell table (which holds no rows) it finds no shard and does nothing.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_write_capture_function(p_relid oid)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    v_fn text := 'cdc_' || p_relid;
    v_buf text := 'changes_' || p_relid;
    v_schema text := pgstream_lite.buffer_schema();
    v_key text := (pgstream_lite.citus_dist_column(p_relid)).col_name;
    -- schema-qualified: the trigger function runs with search_path = pg_catalog
    v_qsrc text := (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_relid);
    v_ids text;
    v_static text;
    v_literal text;
    v_type text := (pgstream_lite.citus_dist_column(p_relid)).col_type;
    v_candidate text;
BEGIN
    -- every stream table reading the source, FULL-mode ones too (their full refreshes claim
    -- the rows: one altered to DIFFERENTIAL then has every change since its last refresh)
    SELECT coalesce(string_agg(DISTINCT d.pgs_id::text, ','), '') INTO v_ids
      FROM pgstream.pgs_dependencies d WHERE d.source_relid = p_relid;
    -- One branch of static SQL per source shard (its name is TG_TABLE_NAME on the worker) and
    -- its co-located buffer shard: plans are cached per session, no metadata lookup, no dynamic
    -- SQL. A shard made after this function was written (a split) takes the dynamic path below.
    EXECUTE format(
        'SELECT string_agg(format(%L, n.p[cardinality(n.p)], '
        'shard_name(%L::regclass, b.shardid)), E''\n'' ORDER BY s.shardid) '
        'FROM pg_dist_shard s CROSS JOIN LATERAL (SELECT parse_ident(shard_name(%L::regclass, '
        's.shardid)) AS p) n JOIN pg_dist_shard b ON b.logicalrelid = %L::regclass '
        'AND b.shardminvalue = s.shardminvalue WHERE s.logicalrelid = %L::regclass',
        format(E'    WHEN %%L THEN\n'
               '        IF TG_OP = ''INSERT'' THEN\n'
               '            INSERT INTO %%2$s (k, pgs_id, op) SELECT DISTINCT r.%1$I, i, ''I'' '
               'FROM __pgs_new r, unnest(%2$L::bigint[]) i;\n'
               '        ELSIF TG_OP = ''UPDATE'' THEN\n'
               '            INSERT INTO %%2$s (k, pgs_id, op) SELECT DISTINCT r.k, i, ''U'' FROM '
               '(SELECT %1$I AS k FROM __pgs_old UNION SELECT %1$I FROM __pgs_new) r, '
               'unnest(%2$L::bigint[]) i;\n'
               '        ELSIF TG_OP = ''DELETE'' THEN\n'
               '            INSERT INTO %%2$s (k, pgs_id, op) SELECT DISTINCT r.%1$I, i, ''D'' '
               'FROM __pgs_old r, unnest(%2$L::bigint[]) i;\n'
               '        ELSE\n'
               '            INSERT INTO %%2$s (pgs_id, op) SELECT i, ''T'' '
               'FROM unnest(%2$L::bigint[]) i;\n'
               '        END IF;\n'
               '        RETURN NULL;',
               v_key, '{' || v_ids || '}'),
        format('%I.%I', v_schema, v_buf), v_qsrc, format('%I.%I', v_schema, v_buf), v_qsrc)
        INTO v_static;
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgstream_lite.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    v_shard text;
BEGIN
    CASE TG_TABLE_NAME
%8$s
    ELSE NULL;
    END CASE;
    SELECT format('%%I.%%I', %2$L, %3$L || '_' || b.shardid) INTO v_shard
      FROM pg_dist_shard s
      JOIN pg_dist_shard b ON b.logicalrelid = to_regclass(%4$L)
                          AND b.shardminvalue = s.shardminvalue
     WHERE s.logicalrelid = to_regclass(%5$L)
       AND s.shardid::text = substring(TG_TABLE_NAME from '_(\d+)$');
    IF v_shard IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('INSERT INTO %%s (pgs_id, op) SELECT i, ''T'' FROM unnest(%%L::bigint[]) i',
                       v_shard, %6$L);
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO %%s (k, pgs_id, op) SELECT DISTINCT r.%%I, i, ''I'' '
                       'FROM __pgs_new r, unnest(%%L::bigint[]) i', v_shard, %7$L, %6$L);
    ELSIF TG_OP = 'UPDATE' THEN
        EXECUTE format('INSERT INTO %%s (k, pgs_id, op) SELECT DISTINCT r.k, i, ''U'' FROM '
                       '(SELECT %%I AS k FROM __pgs_old UNION SELECT %%I FROM __pgs_new) r, '
                       'unnest(%%L::bigint[]) i', v_shard, %7$L, %7$L, %6$L);
    ELSE
        EXECUTE format('INSERT INTO %%s (k, pgs_id, op) SELECT DISTINCT r.%%I, i, ''D'' '
                       'FROM __pgs_old r, unnest(%%L::bigint[]) i', v_shard, %7$L, %6$L);
    END IF;
    RETURN NULL;
END;
$body$ $f$, v_fn, v_schema, v_buf, format('%I.%I', v_schema, v_buf), v_qsrc,
        '{' || v_ids || '}', v_key, coalesce(v_static, ''));
    -- TRUNCATE: Citus fires TRUNCATE triggers on the coordinator's shell only (it does not put
    -- them on the shards; a shard split copies them onto the new shards, where this does
    -- nothing). The shell's trigger records it through Citus, inside the TRUNCATE's
    -- transaction: one 'T' row per consumer, under any valid key (a buffer row needs one).
    FOREACH v_candidate IN ARRAY ARRAY['0', '', '00000000-0000-0000-0000-000000000000',
                                       '2000-01-01', 'f'] LOOP
        BEGIN
            EXECUTE format('SELECT %L::%s', v_candidate, v_type);
            v_literal := v_candidate;
            EXIT;
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;
    IF v_literal IS NULL THEN
        RAISE EXCEPTION 'unsupported operator for Citus: cannot record a TRUNCATE of % (no '
                        'literal of its distribution column type %)', v_qsrc, v_type;
    END IF;
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgstream_lite.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF format('%%I.%%I', TG_TABLE_SCHEMA, TG_TABLE_NAME) = %2$L
       AND to_regclass(%3$L) IS NOT NULL THEN
        INSERT INTO %3$s (k, pgs_id, op) SELECT %4$L::%5$s, i, 'T' FROM unnest(%6$L::bigint[]) i;
    END IF;
    RETURN NULL;
END;
$body$ $f$, 'cdc_truncate_' || p_relid, v_qsrc, format('%I.%I', v_schema, v_buf), v_literal,
        v_type, '{' || v_ids || '}');
    RETURN v_fn;
END;
$fn$;

-- The function a claim runs on each node (citus_node_pending below), created on the coordinator
-- and, through Citus (DDL propagation on: citus_capture), on every node, where it reads every
-- local placement of change buffer p_buffer in one statement: the buffered keys of stream table
-- p_pgs_id and of stream tables not in p_live (dropped since), at most 65, and whether one is a
-- TRUNCATE ('T'). Returns {"k": [keys as text], "t": boolean}. Read-only: the claim's DELETE
-- stays a statement Citus sees, so its commit protocol covers it.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_ensure_node_functions()
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE $create$
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_pending(p_buffer text, p_pgs_id bigint,
                                                           p_live bigint[], p_version text)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    v_sql text;
    v_name text := 'pgstream_np_' || md5(p_buffer || ':' || p_version);
    v jsonb;
BEGIN
    -- prepared once per worker session (Citus keeps its connections to the workers open
    -- across transactions) and placement version p_version (the coordinator's
    -- citus_placement_version): reading the node's shard list again cost ~0.35 ms a claim
    IF EXISTS (SELECT 1 FROM pg_prepared_statements s WHERE s.name = v_name) THEN
        EXECUTE format('EXECUTE %I(%s, %L)', v_name, p_pgs_id, p_live) INTO v;
        RETURN v;
    END IF;
    SELECT string_agg(format('SELECT x.k::text AS k, x.op FROM %s x '
                             'WHERE x.pgs_id = $1 OR x.pgs_id <> ALL ($2)',
                             shard_name(p_buffer::regclass, s.shardid)), ' UNION ALL ')
      INTO v_sql
      FROM pg_dist_shard s
      JOIN pg_dist_placement p ON p.shardid = s.shardid
     WHERE s.logicalrelid = p_buffer::regclass AND p.shardstate = 1
       AND p.groupid = (SELECT g.groupid FROM pg_dist_local_group g);
    IF v_sql IS NULL THEN
        RETURN '{"k": [], "t": false}';
    END IF;
    v_sql := format('SELECT jsonb_build_object(''k'', coalesce(jsonb_agg(g.k), ''[]''), '
                    '''t'', coalesce(bool_or(g.t), false)) FROM (SELECT u.k, '
                    'bool_or(u.op = ''T'') AS t FROM (%s) u GROUP BY u.k LIMIT 65) g', v_sql);
    IF (SELECT count(*) FROM pg_prepared_statements s
         WHERE s.name LIKE 'pgstream\_np\_%') >= 64 THEN
        EXECUTE 'DEALLOCATE ALL';
    END IF;
    EXECUTE format('PREPARE %I (bigint, bigint[]) AS %s', v_name, v_sql);
    EXECUTE format('EXECUTE %I(%s, %L)', v_name, p_pgs_id, p_live) INTO v;
    RETURN v;
END;
$body$
$create$;
    -- A claim's call on a node when the stream table's keys can be refreshed there
    -- (citus_node_spec): after citus_node_pending's read, when it found 1 to 64 keys and no
    -- TRUNCATE, the node claims them (deletes their rows for p_pgs_id and for dropped stream
    -- tables, TRUNCATE rows excepted, from its buffer shards) and, per shard group, runs the
    -- spec's statement over that group's shards (plain local tables here; co-located tables
    -- share hash ranges, so a group's shards are those with the buffer shard's shardminvalue).
    -- The claim comes before the recompute, in this node's part of the refresh's transaction,
    -- so a change committed in between is either recomputed or left buffered. Returns the read's
    -- {"k", "t"} plus "a": [deleted, inserted] when it refreshed them.
    EXECUTE $create$
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_refresh(p_buffer text, p_pgs_id bigint,
                                                           p_live bigint[], p_version text,
                                                           p_spec jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $body$
DECLARE
    v jsonb := pgstream_lite.citus_node_pending(p_buffer, p_pgs_id, p_live, p_version);
    v_type text := p_spec->>'type';
    v_old text := current_setting('search_path');
    g record;
    v_groups jsonb := '[]';
    v_shards text[];
    v_storage text;
    d bigint;
    i bigint;
    v_del bigint := 0;
    v_ins bigint := 0;
BEGIN
    IF p_spec IS NULL OR (v->>'t')::boolean OR jsonb_array_length(v->'k') NOT BETWEEN 1 AND 64 THEN
        RETURN v;
    END IF;
    -- every group's shards first: nothing is claimed unless all can be refreshed
    FOR g IN EXECUTE format('SELECT s.shardid, s.shardminvalue, array_agg(u.k) AS keys '
                            'FROM jsonb_array_elements_text($1) u(k) JOIN pg_catalog.pg_dist_shard s '
                            'ON s.shardid = get_shard_id_for_distribution_column(%L, u.k::%s) '
                            'GROUP BY s.shardid, s.shardminvalue', p_buffer, v_type)
             USING v->'k' LOOP
        SELECT array_agg(shard_name(s.logicalrelid, s.shardid, false) ORDER BY j.o) INTO v_shards
          FROM jsonb_array_elements_text(p_spec->'rels') WITH ORDINALITY AS j(rel, o)
          JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = j.rel::regclass
                                         AND s.shardminvalue = g.shardminvalue;
        SELECT shard_name(s.logicalrelid, s.shardid, false) INTO v_storage
          FROM pg_catalog.pg_dist_shard s
         WHERE s.logicalrelid = (p_spec->>'storage')::regclass AND s.shardminvalue = g.shardminvalue;
        IF v_storage IS NULL
           OR cardinality(v_shards) IS DISTINCT FROM jsonb_array_length(p_spec->'rels') THEN
            RETURN v;
        END IF;
        v_groups := v_groups || jsonb_build_object(
            'buffer', shard_name(p_buffer::regclass, g.shardid, false), 'keys', to_jsonb(g.keys),
            'args', to_jsonb(ARRAY[v_storage, quote_literal(g.keys) || '::' || v_type || '[]']
                             || v_shards));
    END LOOP;
    FOR g IN SELECT x FROM jsonb_array_elements(v_groups) x LOOP
        EXECUTE format('DELETE FROM %s x WHERE x.k = ANY (%L::%s[]) AND x.op <> ''T'' '
                       'AND (x.pgs_id = $1 OR x.pgs_id <> ALL ($2))', g.x->>'buffer',
                       ARRAY(SELECT jsonb_array_elements_text(g.x->'keys')), v_type)
            USING p_pgs_id, p_live;
        PERFORM set_config('search_path', p_spec->>'path', true);
        EXECUTE format(p_spec->>'sql', VARIADIC ARRAY(SELECT jsonb_array_elements_text(g.x->'args')))
            INTO d, i;
        PERFORM set_config('search_path', v_old, true);
        v_del := v_del + d;
        v_ins := v_ins + i;
    END LOOP;
    RETURN v || jsonb_build_object('a', jsonb_build_array(v_del, v_ins));
END;
$body$
$create$;
END;
$fn$;

-- A version of distributed table p_table's placements (md5 of shard ids and their nodes): it
-- changes when a shard moves or splits. Keys the session caches of citus_node_keys and of the
-- statements citus_node_pending prepares on the workers.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_placement_version(p_table text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- PL/pgSQL: its body is not checked at install, where Citus (pg_dist_*) may be absent
    RETURN (SELECT md5(string_agg(p.shardid || ':' || p.groupid, ',' ORDER BY p.shardid))
              FROM pg_dist_shard s JOIN pg_dist_placement p ON p.shardid = s.shardid
             WHERE s.logicalrelid = p_table::regclass AND p.shardstate = 1);
END;
$$;

-- For each node holding placements of distributed buffer p_buffer (keys of type p_type): a key
-- literal whose shard is placed there, so a router query filtered on it runs on that node.
-- Found by trying small values of the type (any shard of the node will do, so a few tries
-- cover every node). NULL when a node gets none (a key type without small literals): the
-- caller then reads every shard through Citus.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_keys(p_buffer text, p_type text)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_shape text;
    v_keys text[];
    v_tries integer;
    v_placed text;
    v_cache text := 'pgstream_lite.citus_node_keys_' || md5(p_buffer);
    v_cached text := current_setting(v_cache, true);
BEGIN
    -- kept for the session while the buffer's placements stay the same (a move or a split
    -- changes them): finding them costs ~0.5 ms, reading the placements ~0.05 ms
    v_placed := pgstream_lite.citus_placement_version(p_buffer);
    IF v_cached LIKE v_placed || ':%' THEN
        RETURN substr(v_cached, length(v_placed) + 2)::text[];
    END IF;
    -- small literals of the type: integers (numeric and string types), or uuids / dates
    -- built on one (the type's category: no cast attempted, so no subtransaction)
    SELECT CASE WHEN t.oid = 'uuid'::regtype THEN 'uuid'
                WHEN t.typcategory IN ('N', 'S') THEN 'int'
                WHEN t.typcategory = 'D' THEN 'date' END
      INTO v_shape FROM pg_type t WHERE t.oid = p_type::regtype;
    IF v_shape IS NULL THEN
        RETURN NULL;
    END IF;
    -- the first literal whose shard is on each node, among the first 8 (enough for a few nodes
    -- but for bad luck), else the first 256 (Citus maps ~10 us per value); NULL unless every
    -- node holding a placement of the buffer gets one
    FOREACH v_tries IN ARRAY ARRAY[8, 256] LOOP
        EXECUTE format(
            'SELECT CASE WHEN count(*) = (SELECT count(DISTINCT p.groupid) FROM pg_dist_shard s '
            'JOIN pg_dist_placement p ON p.shardid = s.shardid WHERE s.logicalrelid = %1$L::regclass '
            'AND p.shardstate = 1) THEN array_agg(x.l) END FROM (SELECT DISTINCT ON (p.groupid) c.l '
            'FROM (SELECT l, i, get_shard_id_for_distribution_column(%1$L, l::%3$s) AS shardid '
            'FROM (SELECT pgstream_lite.citus_small_literal(%2$L, i) AS l, i '
            'FROM generate_series(1, %4$s) i) n OFFSET 0) c JOIN pg_dist_placement p '
            'ON p.shardstate = 1 AND p.shardid = c.shardid '
            'ORDER BY p.groupid, c.i) x', p_buffer, v_shape, p_type, v_tries) INTO v_keys;
        EXIT WHEN v_keys IS NOT NULL;
    END LOOP;
    IF v_keys IS NOT NULL THEN
        PERFORM set_config(v_cache, v_placed || ':' || v_keys::text, false);
    END IF;
    RETURN v_keys;
END;
$$;

-- The i-th small literal of a shape of citus_node_keys: 'int' (i), 'uuid', 'date'.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_small_literal(p_shape text, i integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_shape
        WHEN 'int' THEN i::text
        WHEN 'uuid' THEN '00000000-0000-0000-0000-' || lpad(i::text, 12, '0')
        ELSE ('2000-01-01'::date + i)::text END
$$;

-- Hook of ensure_capture (30_change_capture.sql): capture of a distributed source. Returns
-- false (nothing done) for any other table. Also places the stream table's storage (below).
CREATE OR REPLACE FUNCTION pgstream_lite.citus_capture(p_relid oid, p_pgs_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_kind text := pgstream_lite.citus_table_kind(p_relid);
    v_schema text := pgstream_lite.buffer_schema();
    v_buf text := 'changes_' || p_relid;
    v_col record;
    v_fn text;
    v_unsafe text;
BEGIN
    IF v_kind IS NULL OR p_pgs_id IS NULL THEN
        RETURN false;
    END IF;
    -- the capture function is propagated to the workers, which Citus allows only over one
    -- connection per node for the whole transaction
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    PERFORM pgstream_lite.citus_place_storage(p_pgs_id);
    IF v_kind <> 'distributed' THEN
        -- reference/other Citus tables: no capture; such a source counts as always changed
        -- (st_buffers finds no buffer), and the refresh recomputes (citus_plan)
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock(pgstream_lite.capture_lock_key(p_relid));
    -- DDL below must reach the workers (the API functions run with propagation off: their
    -- temporary probe views cannot be propagated)
    PERFORM set_config('citus.enable_ddl_propagation', 'on', true);
    v_col := pgstream_lite.citus_dist_column(p_relid);
    IF NOT EXISTS (SELECT 1 FROM pgstream_lite.capture c WHERE c.source_relid = p_relid) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = v_schema) THEN
            EXECUTE format('CREATE SCHEMA %I', v_schema);
        END IF;
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', v_schema, v_buf);
        -- xid: far beyond any snapshot, so has_changes (30_change_capture.sql) counts every
        -- row as not yet consumed; rows leave only when a refresh claims them
        EXECUTE format('CREATE TABLE %I.%I (k %s, pgs_id bigint NOT NULL, op "char" NOT NULL, '
                       'xid xid8 NOT NULL DEFAULT ''18446744073709551615'')',
                       v_schema, v_buf, v_col.col_type);
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', v_schema, v_buf,
                       'pgstream-lite change buffer (distributed, co-located) of '
                       || pgstream_lite.relname(p_relid));
        PERFORM create_distributed_table(format('%I.%I', v_schema, v_buf), 'k',
                                         colocate_with => p_relid::regclass::text);
        -- cleaned_to at the top of the xid range: the engine's xid-ranged cleanup
        -- (cleanup_buffers) never sends its DELETE to the 32 shards; claims delete instead
        INSERT INTO pgstream_lite.capture (source_relid, kind, buffer_schema, buffer_name,
                                           trigger_function, cleaned_to)
        VALUES (p_relid, 'TRIGGER', v_schema, v_buf, 'cdc_' || p_relid,
                '18446744073709551615');
    END IF;
    v_fn := pgstream_lite.citus_write_capture_function(p_relid);
    PERFORM pgstream_lite.citus_ensure_node_functions();
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_relid AND t.tgname = '__pgs_cdc')
    THEN
        -- Citus refuses triggers on distributed tables unless this is on, because a trigger
        -- that reaches other shards is unsafe; ours touches only the co-located buffer shard of
        -- the node it runs on. On for these statements only.
        v_unsafe := current_setting('citus.enable_unsafe_triggers');
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
        EXECUTE format('CREATE TRIGGER __pgs_cdc AFTER INSERT ON %s REFERENCING NEW TABLE '
                       'AS __pgs_new FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.%I()',
                       p_relid::regclass, v_fn);
        EXECUTE format('CREATE TRIGGER __pgs_cdc_update AFTER UPDATE ON %s REFERENCING OLD TABLE '
                       'AS __pgs_old NEW TABLE AS __pgs_new FOR EACH STATEMENT '
                       'EXECUTE FUNCTION pgstream_lite.%I()', p_relid::regclass, v_fn);
        EXECUTE format('CREATE TRIGGER __pgs_cdc_delete AFTER DELETE ON %s REFERENCING OLD TABLE '
                       'AS __pgs_old FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.%I()',
                       p_relid::regclass, v_fn);
        -- its own function, which release_capture (30_change_capture.sql) does not drop: after a
        -- shard split the new shards keep a copy of this trigger, which Citus does not drop
        EXECUTE format('CREATE TRIGGER __pgs_cdc_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION pgstream_lite.%I()',
                       p_relid::regclass, 'cdc_truncate_' || p_relid);
        PERFORM set_config('citus.enable_unsafe_triggers', v_unsafe, true);
    END IF;
    RETURN true;
END;
$$;

-- The distributed source whose distribution column the query keeps (NULL: none): among the
-- stream table's distributed sources whose distribution column has the name of an output column
-- (p_col, when given: that column), in oid order, the first for which Citus shows that a
-- filter on that output column prunes the query to a single shard (`Task Count: 1`): every
-- output row with key k then comes from source rows with key k. Probing each candidate, not
-- only the first, matters for joins: `orders o JOIN customers c ON c.id = o.cust` outputs
-- o.id, named like customers' distribution column id, yet keeps only orders' cust.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_keyed_source(p_pgs_id bigint, p_col text)
RETURNS oid LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    v_src oid;
    v_col record;
    v_sample text;
    v_plan jsonb;
    v_tasks integer;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    FOR v_src IN SELECT d.source_relid FROM pgstream.pgs_dependencies d
                  WHERE d.pgs_id = p_pgs_id
                    AND pgstream_lite.citus_table_kind(d.source_relid) = 'distributed'
                  ORDER BY d.source_relid LOOP
        v_col := pgstream_lite.citus_dist_column(v_src);
        CONTINUE WHEN NOT v_col.col_name = ANY (pgstream_lite.stored_columns(m))
                   OR v_col.col_name IS DISTINCT FROM coalesce(p_col, v_col.col_name);
        EXECUTE format('SELECT %I::text FROM %s LIMIT 1', v_col.col_name, v_src::regclass)
            INTO v_sample;
        BEGIN
            EXECUTE format('EXPLAIN (FORMAT JSON) SELECT * FROM (%s) q WHERE q.%I = %L::%s',
                           m.body, v_col.col_name, coalesce(v_sample, '0'), v_col.col_type)
                INTO v_plan;
            v_tasks := (jsonb_path_query_first(v_plan, 'strict $.**."Task Count"'))::integer;
        EXCEPTION WHEN OTHERS THEN
            v_tasks := NULL;  -- e.g. no literal of the key's type: not this one
        END;
        IF v_tasks = 1 THEN
            RETURN v_src;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

-- Where a stream table over Citus tables keeps its rows, decided once (st_meta.citus):
-- distributed by the source's distribution column and co-located with it when Citus shows that
-- the query keeps that column (a filter on the output column prunes the query to one shard:
-- every output row with key k comes from source rows with key k), else coordinator-local.
-- An explicit choice (the dbt package's model config) is read from the transaction-local
-- setting pgstream_lite.citus_distribution (citus_explicit_placement).
CREATE OR REPLACE FUNCTION pgstream_lite.citus_place_storage(p_pgs_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    st pgstream.pgs_stream_tables;
    m pgstream_lite.st_meta;
    v_src oid;
    v_col record;
    v_placement jsonb;
    v_storage text;
    v_key_src oid;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    IF m.citus ? 'storage' THEN
        RETURN;
    END IF;
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    v_storage := format('%I.%I', st.pgs_schema, st.pgs_name);
    v_src := pgstream_lite.citus_source(p_pgs_id);
    v_placement := jsonb_build_object('storage', 'local', 'reason',
                                      'the query reads no distributed table');
    IF coalesce(current_setting('pgstream_lite.citus_distribution', true), '') <> '' THEN
        v_placement := pgstream_lite.citus_explicit_placement(p_pgs_id, v_src,
            current_setting('pgstream_lite.citus_distribution')::jsonb);
    ELSIF v_src IS NOT NULL THEN
        v_col := pgstream_lite.citus_dist_column(v_src);
        v_placement := jsonb_build_object('storage', 'local', 'source', v_src::regclass::text,
            'reason', format('the query does not keep %s''s distribution column %s',
                             v_src::regclass::text, v_col.col_name));
        v_key_src := pgstream_lite.citus_keyed_source(p_pgs_id, NULL);
        IF v_key_src IS NOT NULL THEN
            v_src := v_key_src;
            v_col := pgstream_lite.citus_dist_column(v_src);
            PERFORM pgstream_lite.citus_prepare_storage(v_storage, v_col.col_name);
            PERFORM create_distributed_table(v_storage, v_col.col_name,
                                             colocate_with => v_src::regclass::text);
            v_placement := jsonb_build_object('storage', 'distributed', 'source',
                v_src::regclass::text, 'column', v_col.col_name, 'keyed', true,
                'colocate', v_src::regclass::text,
                'reason', format('the query keeps %s''s distribution column %s: co-located '
                                 'with it', v_src::regclass::text, v_col.col_name));
        END IF;
    END IF;
    UPDATE pgstream_lite.st_meta x SET citus = v_placement WHERE x.pgs_id = p_pgs_id;
END;
$$;

-- Makes storage table p_storage ready for create_distributed_table / create_reference_table:
-- the guard triggers (50_api.sql) would fire on the shards, where the refresh's
-- transaction-local flag is not set, so they go (docs/citus.md: writes are not guarded); and,
-- when p_col is given (hash distribution), the unique index on __pgs_row_id alone becomes
-- (p_col, __pgs_row_id): Citus keeps a unique index only when it includes the distribution column.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_prepare_storage(p_storage text, p_col text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_index text;
BEGIN
    PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
    EXECUTE format('DROP TRIGGER IF EXISTS __pgs_guard_dml ON %s', p_storage);
    EXECUTE format('DROP TRIGGER IF EXISTS __pgs_guard_truncate ON %s', p_storage);
    IF p_col IS NULL THEN
        RETURN;
    END IF;
    FOR v_index IN SELECT i.indexrelid::regclass::text FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid
                      AND a.attnum = i.indkey[0] AND a.attname = '__pgs_row_id'
                    WHERE i.indrelid = p_storage::regclass AND i.indisunique
                      AND i.indnatts = 1 LOOP
        EXECUTE format('DROP INDEX %s', v_index);
    END LOOP;
    -- the key first: a keyed refresh reads and deletes the stored rows of a few keys (with
    -- __pgs_row_id first, each read the whole storage shard: 1.4 ms of a 1-row refresh)
    EXECUTE format('CREATE UNIQUE INDEX ON %s (%I, __pgs_row_id)', p_storage, p_col);
END;
$$;

-- The storage placement asked for explicitly (p_spec, from the setting
-- pgstream_lite.citus_distribution, which the dbt package sets for a model's `distributed_by`,
-- `colocate_with` or `reference` config): {"reference": true}, or {"distributed_by": column}
-- and/or {"colocate_with": "schema.table"} (a hash-distributed table; without distributed_by
-- the column of that table's name). Distributes the storage and returns its st_meta.citus
-- entry. The refresh takes CITUS_KEYS only when the storage ends up distributed by the
-- source's distribution column, co-located with it, and Citus confirms the query keeps that
-- column (as for the automatic choice); else CITUS_RECOMPUTE. Raises, naming the stream table,
-- the key, the value and what is allowed, on a bad choice (the create is rolled back).
CREATE OR REPLACE FUNCTION pgstream_lite.citus_explicit_placement(p_pgs_id bigint, p_src oid,
                                                                  p_spec jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    st pgstream.pgs_stream_tables;
    m pgstream_lite.st_meta;
    v_storage text;
    v_cols text[];
    v_col text := p_spec->>'distributed_by';
    v_with text := p_spec->>'colocate_with';
    v_with_oid oid;
    v_key_src oid;
    v_keyed boolean := false;
    v_where text;
BEGIN
    SELECT * INTO st FROM pgstream.pgs_stream_tables s WHERE s.pgs_id = p_pgs_id;
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    v_storage := format('%I.%I', st.pgs_schema, st.pgs_name);
    v_where := format('invalid Citus distribution for stream table %s.%s: ', st.pgs_schema,
                      st.pgs_name);
    -- the query's output columns (not the engine's own, __pgs_count & co)
    SELECT array_agg(c) INTO v_cols FROM unnest(pgstream_lite.stored_columns(m)) c
     WHERE c NOT LIKE '\_\_pgs\_%';
    IF coalesce((p_spec->>'reference')::boolean, false) THEN
        IF v_col IS NOT NULL OR v_with IS NOT NULL THEN
            RAISE EXCEPTION '%reference=true cannot be combined with distributed_by or '
                            'colocate_with (a reference table is copied to every node)', v_where;
        END IF;
        PERFORM pgstream_lite.citus_prepare_storage(v_storage, NULL);
        PERFORM create_reference_table(v_storage);
        RETURN jsonb_build_object('storage', 'reference', 'source', p_src::regclass::text,
                                  'keyed', false, 'explicit', p_spec,
                                  'reason', 'reference: true asked for (model config)');
    END IF;
    IF v_with IS NOT NULL THEN
        v_with_oid := to_regclass(v_with);
        IF v_with_oid IS NULL
           OR pgstream_lite.citus_table_kind(v_with_oid) IS DISTINCT FROM 'distributed' THEN
            RAISE EXCEPTION '%colocate_with=''%'' is not allowed: % (expected a hash-distributed '
                            'Citus table, schema-qualified)', v_where, v_with,
                            CASE WHEN v_with_oid IS NULL THEN 'no such relation'
                                 ELSE 'it is not a hash-distributed table' END;
        END IF;
        v_col := coalesce(v_col, (pgstream_lite.citus_dist_column(v_with_oid)).col_name);
    END IF;
    IF v_col IS NULL OR NOT v_col = ANY (v_cols) THEN
        RAISE EXCEPTION '%distributed_by=''%'' is not allowed: expected one of the output '
                        'columns (%)', v_where, coalesce(v_col, 'NULL'),
                        array_to_string(v_cols, ', ');
    END IF;
    v_key_src := pgstream_lite.citus_keyed_source(p_pgs_id, v_col);
    IF v_key_src IS NOT NULL THEN
        IF v_with_oid IS NULL THEN
            v_keyed := true;
        ELSE
            EXECUTE 'SELECT count(DISTINCT p.colocationid) = 1 FROM pg_catalog.pg_dist_partition p '
                    'WHERE p.logicalrelid IN ($1, $2)' INTO v_keyed USING v_key_src, v_with_oid;
        END IF;
        p_src := v_key_src;
    END IF;
    PERFORM pgstream_lite.citus_prepare_storage(v_storage, v_col);
    PERFORM create_distributed_table(v_storage, v_col, colocate_with =>
        coalesce(v_with_oid::regclass::text,
                 CASE WHEN v_keyed THEN p_src::regclass::text ELSE 'default' END));
    RETURN jsonb_build_object('storage', 'distributed', 'source', p_src::regclass::text,
        'column', v_col, 'keyed', v_keyed, 'explicit', p_spec,
        'colocate', coalesce(v_with_oid::regclass::text,
                             CASE WHEN v_keyed THEN p_src::regclass::text END),
        'reason', format('distributed_by %s%s asked for (model config)%s', v_col,
                         coalesce(', colocate_with ' || v_with_oid::regclass::text, ''),
                         CASE WHEN v_keyed THEN format(': it keeps %s''s distribution column',
                                                       p_src::regclass::text)
                              WHEN p_src IS NULL THEN ''
                              ELSE format(': not %s''s distribution column co-located with it '
                                          '(changes are not keyed by it)', p_src::regclass::text)
                         END));
END;
$$;

-- The dbt package calls this right after create_stream_table when a model asks for a
-- distribution: raises when the setting was not applied (the query reads no Citus table, so
-- no placement was made, or Citus is not installed). Returns st_meta.citus.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_assert_distribution(p_name text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
    v_id bigint;
BEGIN
    SELECT s.pgs_id INTO v_id FROM pgstream.pgs_stream_tables s
     WHERE s.pgs_schema || '.' || s.pgs_name = p_name
        OR (s.pgs_name = p_name AND s.pgs_schema = current_schema());
    SELECT x.citus INTO v FROM pgstream_lite.st_meta x WHERE x.pgs_id = v_id;
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION 'invalid Citus distribution for stream table %: the citus extension is '
                        'not installed in this database', p_name;
    END IF;
    IF v IS NULL OR NOT (v ? 'explicit') THEN
        RAISE EXCEPTION 'invalid Citus distribution for stream table %: its query reads no Citus '
                        'table (distributed or reference), so its storage stays on the '
                        'coordinator; distributed_by / colocate_with / reference apply to stream '
                        'tables over Citus tables', p_name;
    END IF;
    RETURN v;
END;
$$;

-- Hook of refresh_st (40_refresh.sql): the DIFFERENTIAL plan of a stream table reading a Citus
-- table, NULL for any other. CITUS_KEYS: recompute the keys the claimed changes name;
-- CITUS_RECOMPUTE: claim the changes and recompute everything.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_plan(p_pgs_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT x.citus INTO v FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    v := v || jsonb_build_object('reason_storage', v->>'reason');
    IF v->>'storage' = 'distributed' AND coalesce((v->>'keyed')::boolean, true) AND NOT EXISTS (
            SELECT 1 FROM pgstream.pgs_dependencies d
             WHERE d.pgs_id = p_pgs_id
               AND pgstream_lite.citus_table_kind(d.source_relid) IS DISTINCT FROM 'distributed')
    THEN
        RETURN v || jsonb_build_object('path', 'CITUS_KEYS', 'reason',
            format('recompute the %s keys named by the changes, on the workers', v->>'column'));
    END IF;
    RETURN v || jsonb_build_object('path', 'CITUS_RECOMPUTE', 'reason',
        CASE WHEN v->>'storage' = 'distributed' AND coalesce((v->>'keyed')::boolean, true)
             THEN 'it also reads tables whose changes are not keyed (e.g. reference tables)'
             WHEN v->>'storage' = 'distributed'
             THEN 'the storage is not distributed by the source''s key, co-located with it'
             WHEN v->>'storage' = 'reference' THEN 'the storage is a reference table'
             ELSE 'the query does not keep the distribution column' END
        || ': the changes are claimed and the whole query re-run');
END;
$$;

-- Hook of explain_st (60_monitoring.sql): the operator_tree of a stream table reading Citus
-- tables ({path, reason}: where its storage lives and how it is refreshed), NULL for any other.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_explain(p_pgs_id bigint, p_mode text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb := pgstream_lite.citus_plan(p_pgs_id);
    v_storage text;
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    v_storage := CASE WHEN v->>'storage' = 'distributed'
        THEN format('storage distributed by %s', v->>'column')
             || coalesce(', co-located with ' || coalesce(v->>'colocate',
                    CASE WHEN NOT v ? 'keyed' THEN v->>'source' END), '')
        WHEN v->>'storage' = 'reference' THEN 'storage a reference table (a copy on every node)'
        ELSE 'storage on the coordinator' END || format(' (%s)', v->>'reason_storage');
    IF p_mode = 'FULL' THEN
        RETURN jsonb_build_object('path', 'FULL', 'reason',
            'refresh mode FULL re-runs the whole defining query; ' || v_storage);
    END IF;
    RETURN jsonb_build_object('path', v->>'path', 'reason', (v->>'reason') || '; ' || v_storage);
END;
$$;

-- rows_sql_from (40_refresh.sql) for distributed storage: the occurrence numbers of identical
-- rows are counted per (distribution key, hash), which lets Citus run the whole statement on
-- the workers (a window partitioned by the distribution column is pushed down); identical rows
-- share their key, so the numbers are the same. Built-in hashes: the workers have no
-- pgstream functions.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_rows_sql(p_pgs_id bigint, p_inner text,
                                                        p_key text)
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
        || E'            ELSE hashtextextended(ARRAY[h.__pgs_h::text, h.__pgs_occ::text]::text, 1)\n'
        || E'       END AS __pgs_row_id, %s\n'
        || E'  FROM (SELECT g.*, row_number() OVER (PARTITION BY g.%I, g.__pgs_h) AS __pgs_occ\n'
        || E'          FROM (SELECT %s, hashtextextended(ROW(%s)::text, 0) AS __pgs_h\n'
        || E'                  FROM (\n%s\n) q) g) h',
        h_cols, p_key, q_cols, q_cols, coalesce(p_inner, m.count_query, m.body));
END;
$$;

-- Claim (delete and return) the changes buffered for stream table p_pgs_id in the buffers of
-- its distributed sources, and those of stream tables dropped since: keys, a quoted list of the
-- keys named; all_keys, true after a TRUNCATE or past 100 000 keys (recompute everything).
-- Few keys (up to 64 per buffer): a read of every buffer shard finds them, then the DELETE
-- names them, so Citus sends it only to their shards: a 1-row change touches one worker, and
-- the refresh (its storage writes are on the same worker, co-located) commits without
-- two-phase commit; deleting by key is safe, since a row of that key written meanwhile is
-- also covered by the recompute, which reads later. Many keys: one DELETE ... RETURNING over
-- every shard. The reads use one connection per worker (max_adaptive_executor_pool_size 1):
-- each shard's task is tiny, and opening connections cost more than it saved (measured).
-- With p_spec (citus_node_spec) a node that finds few keys claims and refreshes them itself
-- (citus_node_refresh): applied = {deleted, inserted} of those, and their keys are not in keys.
-- That saves the DELETE by key and a router query per refresh (measured: 1-row filter refresh
-- ~7.5 -> ~6 ms on the benchmark's 1M rows).
DROP FUNCTION IF EXISTS pgstream_lite.citus_claim(bigint);
CREATE OR REPLACE FUNCTION pgstream_lite.citus_claim(p_pgs_id bigint, p_spec jsonb DEFAULT NULL,
                                                     OUT keys text, OUT all_keys boolean,
                                                     OUT applied bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    b record;
    r record;
    v_live bigint[] := (SELECT array_agg(s.pgs_id) FROM pgstream.pgs_stream_tables s);
    v_keys text[] := '{}';
    v_found text[];
    v_t boolean;
    v_type text;
    v_delete text;
    v_pool text := current_setting('citus.max_adaptive_executor_pool_size');
    v_nodes text[];
    v_node text;
    v_version text;
    v_pending jsonb;
    v_done text[] := '{}';
BEGIN
    all_keys := false;
    PERFORM set_config('citus.max_adaptive_executor_pool_size', '1', true);
    FOR b IN SELECT * FROM pgstream_lite.st_buffers(p_pgs_id) s
              WHERE s.buffer_name IS NOT NULL
                AND pgstream_lite.citus_table_kind(s.source_relid) = 'distributed' LOOP
        v_type := (pgstream_lite.citus_dist_column(b.source_relid)).col_type;
        v_found := NULL;
        v_t := false;
        v_nodes := pgstream_lite.citus_node_keys(format('%I.%I', b.buffer_schema, b.buffer_name),
                                                 v_type);
        v_version := pgstream_lite.citus_placement_version(
            format('%I.%I', b.buffer_schema, b.buffer_name));
        IF v_nodes IS NOT NULL THEN
            -- one router query per node (filtered on a key of a shard placed there), whose
            -- function reads all that node's buffer shards in one statement: 16 sequential
            -- tasks per worker took 4 ms, this ~0.3 ms a node (measured)
            FOREACH v_node IN ARRAY v_nodes LOOP
                EXECUTE format('SELECT pgstream_lite.%s(%L, %s, %L, %L%s) FROM '
                               '(SELECT count(*) FROM %I.%I x WHERE x.k = %L::%s) q',
                               CASE WHEN p_spec IS NULL THEN 'citus_node_pending'
                                    ELSE 'citus_node_refresh' END,
                               format('%I.%I', b.buffer_schema, b.buffer_name), p_pgs_id,
                               coalesce(v_live, '{}'), v_version,
                               CASE WHEN p_spec IS NULL THEN ''
                                    ELSE format(', %L::jsonb', p_spec) END,
                               b.buffer_schema, b.buffer_name, v_node, v_type) INTO v_pending;
                IF v_pending ? 'a' THEN
                    -- claimed and refreshed on that node (citus_node_refresh)
                    applied := ARRAY[coalesce(applied[1], 0) + (v_pending->'a'->>0)::bigint,
                                     coalesce(applied[2], 0) + (v_pending->'a'->>1)::bigint];
                    v_done := v_done || ARRAY(SELECT jsonb_array_elements_text(v_pending->'k'));
                ELSIF jsonb_array_length(v_pending->'k') > 0 THEN
                    v_found := coalesce(v_found, '{}')
                        || ARRAY(SELECT jsonb_array_elements_text(v_pending->'k'));
                    v_t := v_t OR (v_pending->>'t')::boolean;
                END IF;
            END LOOP;
        ELSE
            -- grouped by the distribution column: pushed down whole, the LIMIT applied after;
            -- a plain multi-shard query, gathered here (wrapped in an outer aggregate, Citus
            -- would plan it as a subplan shipped as an intermediate result: twice the time of a
            -- 1-row claim); the values as literals: Citus does not plan a cursor's parameters
            FOR r IN EXECUTE format('SELECT x.k::text AS k, bool_or(x.op = ''T'') AS t FROM '
                                    '%I.%I x WHERE x.pgs_id = %s OR x.pgs_id <> ALL '
                                    '(%L::bigint[]) GROUP BY x.k LIMIT 65', b.buffer_schema,
                                    b.buffer_name, p_pgs_id, coalesce(v_live, '{}')) LOOP
                v_found := coalesce(v_found, '{}') || r.k;
                v_t := v_t OR r.t;
            END LOOP;
        END IF;
        IF cardinality(v_done) > 0 THEN
            -- a DELETE of nothing, pruned to the refreshed keys' shards: Citus then counts the
            -- connection that wrote them (the only one to each node here: pool size 1) as one
            -- that modified their placements, so it is prepared under two-phase commit and later
            -- statements of the transaction on those shard groups use it (and see the writes)
            EXECUTE format('DELETE FROM %I.%I x WHERE x.k = ANY (%L::%s[]) AND x.pgs_id = -1',
                           b.buffer_schema, b.buffer_name, v_done, v_type);
            v_done := '{}';
        END IF;
        CONTINUE WHEN v_found IS NULL;
        IF NOT v_t AND cardinality(v_found) <= 64 THEN
            -- pruned to the shards of these keys (a literal: Citus prunes at planning)
            v_delete := format('DELETE FROM %I.%I x WHERE x.k = ANY (%L::%s[]) AND '
                               '(x.pgs_id = %s OR x.pgs_id <> ALL (%L::bigint[])) '
                               'RETURNING x.k, x.op, x.pgs_id',
                               b.buffer_schema, b.buffer_name, v_found, v_type, p_pgs_id,
                               coalesce(v_live, '{}'));
        ELSE
            PERFORM set_config('citus.max_adaptive_executor_pool_size', v_pool, true);
            -- a plain multi-shard DELETE ... RETURNING: wrapped in a CTE, Citus would add a
            -- coordinator step over an intermediate result (measured 2-3x slower)
            v_delete := format('DELETE FROM %I.%I x WHERE x.pgs_id = %s OR x.pgs_id <> ALL '
                               '(%L::bigint[]) RETURNING x.k, x.op, x.pgs_id',
                               b.buffer_schema, b.buffer_name, p_pgs_id, coalesce(v_live, '{}'));
        END IF;
        -- literals, not parameters: with a key type whose array input is not immutable (date),
        -- Citus cannot plan the parameterised statement ('could not create distributed plan')
        FOR r IN EXECUTE v_delete LOOP
            IF r.pgs_id = p_pgs_id THEN
                IF r.op = 'T' THEN
                    all_keys := true;
                ELSE
                    -- co-located sources share the key's type and values (their joins are on it);
                    -- the text form is made here: a cast to text in RETURNING is refused by
                    -- Citus for types whose output is not immutable (date)
                    v_keys := v_keys || r.k::text;
                END IF;
            END IF;
        END LOOP;
        PERFORM set_config('citus.max_adaptive_executor_pool_size', '1', true);
    END LOOP;
    PERFORM set_config('citus.max_adaptive_executor_pool_size', v_pool, true);
    SELECT string_agg(quote_literal(u.k), ','), all_keys OR count(*) > 100000
      INTO keys, all_keys
      FROM (SELECT DISTINCT k FROM unnest(v_keys) k) u;
END;
$$;

-- The FROM items of stream table p_pgs_id's query (from_items, on the text the refresh runs:
-- count_query or body) when every table it reads is one of them, so replacing each by its shard
-- gives the query over one shard group (citus_node_template); NULL otherwise (a subquery
-- expression, a CTE, a UNION: whatever dvm_plan would recompute). Decided at the first keyed
-- refresh and kept in st_meta.citus ('node_items'). Runs in the stream table's search_path.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_items(p_pgs_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    v_prop text := current_setting('citus.enable_ddl_propagation');
    v_dvm jsonb;
    fi jsonb;
    v_items jsonb;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    IF m.citus ? 'node_items' THEN
        RETURN CASE WHEN jsonb_typeof(m.citus->'node_items') = 'array'
                    THEN m.citus->'node_items' END;
    END IF;
    -- dvm_plan's probe view is temporary: Citus must not try to propagate it
    PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
    v_dvm := pgstream_lite.dvm_plan(p_pgs_id);
    PERFORM set_config('citus.enable_ddl_propagation', v_prop, true);
    fi := pgstream_lite.from_items(coalesce(m.count_query, m.body));
    IF v_dvm->>'path' <> 'RECOMPUTE' AND NOT v_dvm ? 'union' AND (fi->>'ok')::boolean
       AND (SELECT array_agg(DISTINCT (x->>'relid')::oid ORDER BY (x->>'relid')::oid)
              FROM jsonb_array_elements(fi->'items') x)
           = (SELECT array_agg(DISTINCT d.source_relid ORDER BY d.source_relid)
                FROM pgstream.pgs_dependencies d WHERE d.pgs_id = p_pgs_id) THEN
        v_items := fi->'items';
    END IF;
    UPDATE pgstream_lite.st_meta x
       SET citus = x.citus || jsonb_build_object('node_items', coalesce(v_items, 'null'))
     WHERE x.pgs_id = p_pgs_id;
    RETURN v_items;
END;
$$;

-- The statement a node runs for a shard group of stream table p_pgs_id (citus_node_refresh), as
-- a format() template: %1$s the storage shard, %2$s the keys (an array expression), %3$s... the
-- shards of the FROM items p_items, in their order. It recomputes the keys' rows once
-- (materialized) and, in data-modifying CTEs, deletes the stored rows that are gone and inserts
-- the new ones, returning both counts: the INSERT's snapshot still has the rows the DELETE
-- removes, which are not among the recomputed ones (their ids are gone), so the two never meet.
-- Both are hash anti-joins over the key's rows (ON CONFLICT DO NOTHING probed the unique index
-- once per recomputed row: 0.8 of 2.2 ms for a key of 516 rows, measured). Placeholders go in as
-- unique tokens first, so a '%' in the query text is escaped, not read as a format directive.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_template(p_pgs_id bigint, p_col text,
                                                             p_items jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    v_tok text := '__pgs_' || md5(clock_timestamp()::text || random()::text);
    v_cols text;
    v_sql text;
    o integer;
BEGIN
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    SELECT string_agg(format('%I', c), ', ' ORDER BY u.o) INTO v_cols
      FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o);
    v_sql := format(
        E'WITH n AS MATERIALIZED (\n%1$s\n), '
        || 'd AS (DELETE FROM %2$s t WHERE t.%3$I = ANY (%4$s) AND NOT EXISTS '
        || '(SELECT 1 FROM n WHERE n.%3$I = t.%3$I AND n.__pgs_row_id = t.__pgs_row_id) '
        || 'RETURNING 1), '
        || 'i AS (INSERT INTO %2$s (__pgs_row_id, %5$s) SELECT n.* FROM n WHERE NOT EXISTS '
        || '(SELECT 1 FROM %2$s t WHERE t.%3$I = ANY (%4$s) AND t.%3$I = n.%3$I '
        || 'AND t.__pgs_row_id = n.__pgs_row_id) RETURNING 1) '
        || 'SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM i)',
        pgstream_lite.citus_rows_sql(p_pgs_id,
            format(E'SELECT * FROM (\n%s\n) q WHERE q.%I = ANY (%s)',
                   pgstream_lite.subst_items(coalesce(m.count_query, m.body), p_items,
                       ARRAY(SELECT v_tok || 'i' || g || '__'
                               FROM generate_series(1, jsonb_array_length(p_items)) g)),
                   p_col, v_tok || 'k__'),
            p_col),
        v_tok || 's__', p_col, v_tok || 'k__', v_cols);
    v_sql := replace(replace(replace(v_sql, '%', '%%'), v_tok || 's__', '%1$s'),
                     v_tok || 'k__', '%2$s');
    FOR o IN 1 .. jsonb_array_length(p_items) LOOP
        v_sql := replace(v_sql, v_tok || 'i' || o || '__', '%' || (o + 2) || '$s');
    END LOOP;
    RETURN v_sql;
END;
$$;

-- What a claim sends each node so that it also refreshes the keys it finds there
-- (citus_node_refresh), or NULL (the keys then go through Citus, below): only for a CITUS_KEYS
-- stream table whose tables are all FROM items (citus_node_items), with one placement per
-- storage shard, reading one table. With two co-located sources (two buffers) a key claimed
-- through Citus from one buffer (past 64 keys, over a pool of connections) could be written by
-- another connection than the one its node refresh used for the other buffer, in the same
-- transaction: a wait on our own uncommitted rows. So joins keep the statements through Citus. {sql: citus_node_template, rels: the items' tables, storage, type: of the key,
-- path: the stream table's search_path}; names, not oids (they differ between nodes). Decided
-- at the first keyed refresh and kept in st_meta.citus ('node_sql', 'node_rels').
CREATE OR REPLACE FUNCTION pgstream_lite.citus_node_spec(p_pgs_id bigint, p_plan jsonb,
                                                         p_storage text, p_type text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_items jsonb;
    v jsonb;
BEGIN
    IF p_plan->>'path' IS DISTINCT FROM 'CITUS_KEYS' THEN
        RETURN NULL;
    END IF;
    SELECT x.citus INTO v FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    IF NOT v ? 'node_sql' THEN
        v_items := pgstream_lite.citus_node_items(p_pgs_id);
        IF v_items IS NOT NULL AND (SELECT count(*) FROM pgstream.pgs_dependencies d
                                     WHERE d.pgs_id = p_pgs_id) = 1 AND NOT EXISTS (
                SELECT 1 FROM pg_dist_shard s JOIN pg_dist_placement p ON p.shardid = s.shardid
                 WHERE s.logicalrelid = p_storage::regclass AND p.shardstate = 1
                 GROUP BY s.shardid HAVING count(*) > 1) THEN
            v := jsonb_build_object(
                'node_sql', pgstream_lite.citus_node_template(p_pgs_id, p_plan->>'column',
                                                              v_items),
                'node_rels', (SELECT jsonb_agg(format('%I.%I', n.nspname, c.relname) ORDER BY j.o)
                                FROM jsonb_array_elements(v_items) WITH ORDINALITY AS j(x, o)
                                JOIN pg_class c ON c.oid = (j.x->>'relid')::oid
                                JOIN pg_namespace n ON n.oid = c.relnamespace));
        ELSE
            v := jsonb_build_object('node_sql', NULL, 'node_rels', NULL);
        END IF;
        UPDATE pgstream_lite.st_meta x SET citus = x.citus || v WHERE x.pgs_id = p_pgs_id;
    END IF;
    IF jsonb_typeof(v->'node_sql') IS DISTINCT FROM 'string' THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('sql', v->'node_sql', 'rels', v->'node_rels', 'storage', p_storage,
                              'type', p_type, 'path', current_setting('search_path'));
END;
$$;

-- Hook of refresh_st's FULL/RECOMPUTE paths (40_refresh.sql), called before the query runs: a
-- stream table over distributed tables first claims its buffered changes (a full refresh
-- consumes them all; FULL-mode tables are captured too, so that one altered to DIFFERENTIAL
-- has everything since its last refresh). Returns, for distributed storage, the rows SQL whose
-- whole statement Citus runs on the workers; NULL for any other stream table.
CREATE OR REPLACE FUNCTION pgstream_lite.citus_full_rows_sql(p_pgs_id bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT x.citus INTO v FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    IF v->>'source' IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgstream_lite.citus_claim(p_pgs_id);
    IF v->>'storage' = 'distributed' THEN
        RETURN pgstream_lite.citus_rows_sql(p_pgs_id, NULL, v->>'column');
    END IF;
    RETURN NULL;
END;
$$;

-- The CITUS_* refresh paths. Returns what refresh_st records (as refresh_linear & co do);
-- no_data: nothing was claimed and every source is a captured distributed table, so nothing
-- changed since the last refresh (has_changes leaves distributed buffers to this claim).
DROP FUNCTION IF EXISTS pgstream_lite.citus_refresh(bigint, text, jsonb);
CREATE OR REPLACE FUNCTION pgstream_lite.citus_refresh(
    p_pgs_id bigint, p_storage text, p_plan jsonb,
    OUT ins bigint, OUT del bigint, OUT snap text, OUT truncated boolean, OUT rebuilt boolean,
    OUT no_data boolean)
LANGUAGE plpgsql AS $$
DECLARE
    m pgstream_lite.st_meta;
    v_keys text;
    v_all boolean := p_plan->>'path' = 'CITUS_RECOMPUTE';
    v_cols text;
    v_t boolean;
    v_type text;
    v_rows text;
    v_in_keys text;
    v_node bigint[];
BEGIN
    truncated := false;
    rebuilt := false;
    SELECT * INTO m FROM pgstream_lite.st_meta x WHERE x.pgs_id = p_pgs_id;
    SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO v_cols
      FROM unnest(pgstream_lite.stored_columns(m)) WITH ORDINALITY AS u(c, o);
    v_type := (pgstream_lite.citus_dist_column((p_plan->>'source')::regclass)).col_type;
    SELECT c.keys, c.all_keys, c.applied INTO v_keys, v_t, v_node
      FROM pgstream_lite.citus_claim(p_pgs_id, CASE WHEN NOT v_all THEN
               pgstream_lite.citus_node_spec(p_pgs_id, p_plan, p_storage, v_type) END) c;
    no_data := v_keys IS NULL AND NOT v_t AND v_node IS NULL AND NOT EXISTS (
        SELECT 1 FROM pgstream_lite.st_buffers(p_pgs_id) b
         WHERE b.buffer_name IS NULL OR NOT b.distributed);
    IF no_data THEN
        ins := 0;
        del := 0;
        snap := pg_current_snapshot()::text;
        RETURN;
    END IF;
    v_all := v_all OR v_t;
    IF v_all THEN
        -- no RETURNING: Citus would ship one row per deleted row to the coordinator
        EXECUTE format('DELETE FROM %s', p_storage);
        GET DIAGNOSTICS del = ROW_COUNT;
        EXECUTE format(E'INSERT INTO %s (__pgs_row_id, %s)\n%s', p_storage, v_cols,
                       CASE WHEN p_plan->>'storage' = 'distributed'
                            THEN pgstream_lite.citus_rows_sql(p_pgs_id, NULL, p_plan->>'column')
                            ELSE pgstream_lite.rows_sql(p_pgs_id) END);
        GET DIAGNOSTICS ins = ROW_COUNT;
    ELSIF v_keys IS NULL THEN
        ins := 0;
        del := 0;
    ELSE
        -- every output row of key k comes from source rows of key k (citus_place_storage), and
        -- identical rows share their key: the occurrence numbering of the row ids is the same
        -- within a key's rows as within the whole result. The keys' rows are recomputed and
        -- compared with the stored ones by row id, on the workers (both statements join on the
        -- distribution column, so Citus pushes each down to the keys' shards): only the rows
        -- that differ are written, so a 1-row change writes 1 row, not every row of its key,
        -- and rows_inserted/rows_deleted are the true delta. The DELETE's key restriction is
        -- repeated inside NOT EXISTS: without it Citus sends it to every shard. The INSERT
        -- skips the rows already stored through the (__pgs_row_id, key) unique index: as an
        -- anti-join, the planner on the workers chose a merge join on the key alone, which
        -- compares every pair of a key's rows (measured 15 ms for one key's 515 rows; 2.7 ms
        -- this way), and a subquery fence that would force a hash join stops Citus from
        -- pushing a multi-shard INSERT down.
        v_in_keys := format('%I = ANY (ARRAY[%s]::%s[])', p_plan->>'column', v_keys, v_type);
        v_rows := pgstream_lite.citus_rows_sql(p_pgs_id,
            format(E'SELECT * FROM (\n%s\n) q WHERE q.%s', coalesce(m.count_query, m.body),
                   v_in_keys),
            p_plan->>'column');
        EXECUTE format('DELETE FROM %1$s t WHERE t.%2$s AND NOT EXISTS '
                       || E'(SELECT 1 FROM (\n%3$s\n) n WHERE t.%2$s '
                       || 'AND t.%4$I = n.%4$I AND t.__pgs_row_id = n.__pgs_row_id)',
                       p_storage, v_in_keys, v_rows, p_plan->>'column');
        GET DIAGNOSTICS del = ROW_COUNT;
        EXECUTE format(E'INSERT INTO %s (__pgs_row_id, %s) SELECT n.* FROM (\n%s\n) n '
                       || 'ON CONFLICT (__pgs_row_id, %I) DO NOTHING',
                       p_storage, v_cols, v_rows, p_plan->>'column');
        GET DIAGNOSTICS ins = ROW_COUNT;
    END IF;
    IF NOT v_all AND v_node IS NOT NULL THEN
        -- the keys the nodes refreshed themselves (citus_node_refresh)
        del := del + v_node[1];
        ins := ins + v_node[2];
    END IF;
    snap := pg_current_snapshot()::text;
END;
$$;

DROP FUNCTION IF EXISTS pgstream_lite.citus_keys_on_nodes(bigint, jsonb, text, text, text);
DROP FUNCTION IF EXISTS pgstream_lite.citus_node_apply(text[], text);

-- create_stream_table and explain_st create and drop temporary probe views over the sources,
-- which Citus would try to propagate to the workers (and fail on pg_temp): they run with DDL
-- propagation off; what must reach the workers turns it on for itself (citus_capture). Not the
-- refreshes: a FULL refresh's TRUNCATE of distributed storage must reach the shards. Only where
-- Citus is installed.
DO $$
DECLARE
    f regprocedure;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'pgstream' AND p.proname IN ('create_stream_table',
                                                                  'explain_st')
 LOOP
            EXECUTE format('ALTER FUNCTION %s SET citus.enable_ddl_propagation = off', f);
        END LOOP;
        -- a create propagates the capture function (citus_capture), which Citus allows only
        -- when the transaction used one connection per node throughout
        ALTER FUNCTION pgstream.create_stream_table(text, text, text, text, boolean)
            SET citus.multi_shard_modify_mode = 'sequential';
        -- dropping the last stream table over a source drops its capture triggers
        -- (release_capture), which Citus allows on a distributed table only with this on
        ALTER FUNCTION pgstream.drop_stream_table(text) SET citus.enable_unsafe_triggers = on;
        ALTER FUNCTION pgstream.drop_stream_table(text)
            SET citus.multi_shard_modify_mode = 'sequential';
        -- a reference-table storage has a placement on the coordinator, which Citus would drop
        -- by local execution; a create later in the same transaction (a dbt replace) then fails
        -- ('cannot switch local execution status ... visibility problems'): drop over a
        -- connection instead
        ALTER FUNCTION pgstream.drop_stream_table(text) SET citus.enable_local_execution = off;
        -- an install over one that already captures distributed tables (an upgrade): the
        -- functions the refreshes call on the workers may be new (citus_node_refresh)
        IF EXISTS (SELECT 1 FROM pgstream_lite.capture c
                    WHERE pgstream_lite.citus_table_kind(c.source_relid) = 'distributed') THEN
            PERFORM pgstream_lite.citus_ensure_node_functions();
        END IF;
    END IF;
END;
$$;
