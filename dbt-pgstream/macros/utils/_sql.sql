{#- Private SQL-building helpers of dbt_pgstream. Nothing here runs SQL. -#}

{#- A SQL string literal for `value` (none -> NULL). Single quotes are doubled; a value holding a
    backslash becomes an E'' literal with backslashes doubled, so the text arrives unchanged
    whatever standard_conforming_strings says. Never dollar quoting: the text may contain any
    dollar-quote tag. -#}
{% macro _pgstream_literal(value) -%}
  {%- if value is none -%}
    NULL
  {%- else -%}
    {%- set text = value | string -%}
    {%- if '\\' in text -%}
      E'{{ text.replace('\\', '\\\\').replace("'", "''") }}'
    {%- else -%}
      '{{ text.replace("'", "''") }}'
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}


{#- A quoted SQL identifier: double quotes doubled (adapter.quote does not escape them). -#}
{% macro _pgstream_ident(name) -%}
  "{{ name | string | replace('"', '""') }}"
{%- endmacro %}


{#- The `name` argument of the pg_stream API: 'schema.table' from the raw (unquoted) parts. The API
    splits on the first dot, which is why schemas containing a dot are rejected up front. -#}
{% macro _pgstream_api_name(relation) -%}
  {%- set names = dbt_pgstream._pgstream_pg_names(relation) -%}
  {{- dbt_pgstream._pgstream_literal(names[0] ~ '.' ~ names[1]) -}}
{%- endmacro %}


{#- Predicate selecting the catalog row of `relation` (schema and name compared apart). -#}
{% macro _pgstream_catalog_match(relation, alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set names = dbt_pgstream._pgstream_pg_names(relation) -%}
  {{ alias }}.{{ e.st_schema }} = {{ dbt_pgstream._pgstream_literal(names[0]) }}
    AND {{ alias }}.{{ e.st_name }} = {{ dbt_pgstream._pgstream_literal(names[1]) }}
{%- endmacro %}


{#- Transaction-scoped advisory lock serialising every check-then-act on one stream table, so two
    dbt processes deploying the same model at once take turns. -#}
{% macro _pgstream_lock_sql(relation) -%}
  SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended({{
    dbt_pgstream._pgstream_literal('dbt_pgstream:' ~ relation.schema ~ '.' ~ relation.identifier)
  }}, 0))
{%- endmacro %}


{#- The SQL API this package is written against, per engine API (docs/engines.md). -#}
{% macro _pgstream_api_version(engine=none) -%}
  {%- set e = engine if engine is not none else dbt_pgstream._pgstream_engine() -%}
  {{- 'pg_trickle 0.67+' if e.api == 'pg_trickle' else 'pg_stream v0.1' -}}
{%- endmacro %}


{#- The API objects (in the engine's schema) the package calls or reads: each function with the
    argument names the package passes (every call uses named arguments, so only the names and
    their presence matter, not the position or the full signature, which grows between versions
    of pg_trickle). Names are kept unqualified here and qualified at run time. -#}
{% macro _pgstream_required_objects(engine=none) %}
  {%- set e = engine if engine is not none else dbt_pgstream._pgstream_engine() -%}
  {%- set functions = {
      'create_stream_table': ['name', 'query', 'schedule', 'refresh_mode', 'initialize'],
      'alter_stream_table': ['name', 'schedule', 'refresh_mode', 'status'],
      'drop_stream_table': ['name'],
      'refresh_stream_table': ['name'],
  } -%}
  {%- if e.api == 'pg_trickle' -%}
    {%- do functions.update({'resume_stream_table': ['name']}) -%}
  {%- endif -%}
  {{ return({
      'functions': functions,
      'tables': [e.stream_tables.split('.')[1], e.dependencies.split('.')[1],
                 'pg_stat_stream_tables'],
  }) }}
{% endmacro %}


{#- Private: the dbt target's database as a postgresql:// URI (no password), quoted for a POSIX
    shell, for hints that must run when pasted. -#}
{% macro _pgstream_target_uri() -%}
  {%- set host = (target.host or '') | string -%}
  {%- set query = [] -%}
  {%- if host.startswith('/') -%}
    {%- do query.append('host=' ~ host | urlencode) -%}
    {%- set host = '' -%}
  {%- endif -%}
  {%- set uri = 'postgresql://' ~ (target.user | string | urlencode | replace('/', '%2F'))
      ~ '@' ~ (('[' ~ host ~ ']') if ':' in host else host)
      ~ (':' ~ target.port if target.port else '') ~ '/'
      ~ (target.dbname | string | urlencode | replace('/', '%2F'))
      ~ ('?' ~ query | join('&') if query else '') -%}
  {{- "'" ~ uri.replace("'", "'\\''") ~ "'" -}}
{%- endmacro %}


{#- One clear error, instead of "schema pgstream does not exist" or "permission denied for
    schema pgstream", sent in the same round trip as the statement that follows it. In order:
    no engine installed; a role without the rights the package needs (USAGE on the engine's
    schema, SELECT on the catalog, EXECUTE on the API functions: all missing ones are named, with
    the GRANT statements that give them, runnable as pasted: where the engine has an admin role
    holding EXECUTE on its API, pgtrickle_admin on pg_trickle 0.108, membership in it); an
    API of another version (a function the package calls is missing or lacks an argument). -#}
{% macro _pgstream_assert_installed_sql() -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set ident = dbt_pgstream._pgstream_ident -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set required = dbt_pgstream._pgstream_required_objects(e) -%}
  {%- set api = dbt_pgstream._pgstream_api_version(e) -%}
  {%- set not_installed = 'dbt_pgstream: no stream-table engine is installed in database "%s": '
      ~ 'pg_stream is not installed (no table pgstream.pgs_stream_tables) and pg_trickle is not '
      ~ 'installed (no table pgtrickle.pgt_stream_tables). Get one before running stream_table '
      ~ 'models or dbt_pgstream operations: CREATE EXTENSION pg_trickle; (or CREATE EXTENSION '
      ~ 'pg_stream;), run by a superuser on a server that preloads it; or, where no extension '
      ~ 'can be installed, pgstream-lite: pgstream-lite install --dsn '
      ~ dbt_pgstream._pgstream_target_uri().replace('%', '%%') ~ ' (the password as libpq '
      ~ 'finds it: PGPASSWORD or ~/.pgpass).' -%}
  {%- set denied = 'dbt_pgstream: role "%s" lacks rights dbt_pgstream needs in database "%s": '
      ~ '%s. Grant them (see "Grants a dbt role needs" in the dbt-pgstream README): run, as '
      ~ 'the owner of schema ' ~ e.schema ~ ' or a superuser: %s' -%}
  {%- set mismatch = 'dbt_pgstream: the ' ~ e.extension ~ ' in database "%s" (%s) does not '
      ~ 'provide the ' ~ api ~ ' SQL API this package requires: %s. Install or upgrade to a '
      ~ 'version that implements it, or use a dbt_pgstream release made for your version.' -%}
  {%- set body -%}
DECLARE
  v_denied text[] := '{}';
  v_grants text[] := '{}';
  v_missing text[] := '{}';
  v_obj text;
  v_fn regprocedure;
  v_version text;
  v_role text := pg_catalog.quote_ident(current_user::text);
  v_admin text := pg_catalog.to_regrole({{ lit(e.schema ~ '_admin') }})::text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {{ lit(e.schema) }}) THEN
    RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(not_installed) }},
      pg_catalog.current_database());
  END IF;
  IF NOT pg_catalog.has_schema_privilege({{ lit(e.schema) }}, 'USAGE') THEN
    v_denied := v_denied || {{ lit('USAGE on schema ' ~ e.schema) }}::text;
    {#- the rest cannot be checked without USAGE: the hint grants what the package reads -#}
    v_grants := v_grants
      || ('GRANT USAGE ON SCHEMA ' || {{ lit(ident(e.schema)) }} || ' TO ' || v_role || ';')
      || ('GRANT SELECT ON ALL TABLES IN SCHEMA ' || {{ lit(ident(e.schema)) }} || ' TO '
          || v_role || ';');
  ELSE
    IF pg_catalog.to_regclass({{ lit(e.stream_tables) }}) IS NULL THEN
      RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(not_installed) }},
        pg_catalog.current_database());
    END IF;
    FOREACH v_obj IN ARRAY ARRAY[{% for t in required.tables %}{{ lit(t) }}{{ ', ' if not loop.last }}{% endfor %}]::text[] LOOP
      v_obj := {{ lit(e.schema ~ '.') }} || v_obj;
      IF pg_catalog.to_regclass(v_obj) IS NULL THEN
        v_missing := v_missing || ('relation ' || v_obj || ' is missing');
      ELSIF NOT pg_catalog.has_table_privilege(v_obj, 'SELECT') THEN
        v_denied := v_denied || ('SELECT on ' || v_obj);
        v_grants := v_grants || ('GRANT SELECT ON ' || v_obj::regclass::text || ' TO ' || v_role
                                 || ';');
      END IF;
    END LOOP;
    {%- for fn, args in required.functions.items() %}
    SELECT p.oid::regprocedure INTO v_fn FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = {{ lit(e.schema) }}::regnamespace AND p.proname = {{ lit(fn) }}
      AND p.proargnames @> ARRAY[{% for a in args %}{{ lit(a) }}{{ ', ' if not loop.last }}{% endfor %}]::text[]
    ORDER BY p.oid LIMIT 1;
    IF v_fn IS NULL THEN
      v_missing := v_missing || ('function ' || {{ lit(e.schema) }} || '.'
                                 || {{ lit(fn ~ '(' ~ args | join(', ') ~ ') is missing') }}
        || COALESCE(' (found ' || (
             SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid)
             FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = {{ lit(e.schema) }}::regnamespace AND p.proname = {{ lit(fn) }}
           ) || ')', ''));
    ELSIF NOT pg_catalog.has_function_privilege(v_fn, 'EXECUTE') THEN
      v_denied := v_denied || ('EXECUTE on function ' || v_fn::text);
      IF v_admin IS NOT NULL THEN
        -- pg_trickle 0.108 grants EXECUTE on its API to its admin role only
        v_grants := pg_catalog.array_remove(v_grants, 'GRANT ' || v_admin || ' TO ' || v_role
                                            || ';')
                    || ('GRANT ' || v_admin || ' TO ' || v_role || ';');
      ELSE
        v_grants := v_grants || ('GRANT EXECUTE ON FUNCTION ' || v_fn::text || ' TO ' || v_role
                                 || ';');
      END IF;
    END IF;
    {%- endfor %}
  END IF;
  IF pg_catalog.cardinality(v_denied) > 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
      MESSAGE = pg_catalog.format({{ lit(denied) }}, current_user, pg_catalog.current_database(),
                                  pg_catalog.array_to_string(v_denied, ', '),
                                  pg_catalog.array_to_string(v_grants, ' '));
  END IF;
  IF pg_catalog.cardinality(v_missing) > 0 THEN
    SELECT {{ lit(e.extension ~ ' extension version ') }} || x.extversion INTO v_version
    FROM pg_catalog.pg_extension AS x WHERE x.extname = {{ lit(e.extension) }};
    RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(mismatch) }},
      pg_catalog.current_database(),
      COALESCE(v_version, {{ lit('schema ' ~ e.schema ~ ', no ' ~ e.extension
                                 ~ ' extension: e.g. pgstream-lite') }}),
      pg_catalog.array_to_string(v_missing, '; '));
  END IF;
END
  {%- endset -%}
  DO {{ lit(body) }}
{%- endmacro %}


{#- Predicates over a catalog row `st` telling why an existing stream table must be replaced. -#}
{#- The stored defining query differs from `query` (the model's, from _pgstream_query_text): not
    when the stored text is `query` plus leading whitespace and trailing whitespace, `;` and
    comments only (a stream table created before the package stripped them, or by hand). The
    remainder starts where `query` ends, at a token boundary, so matching it by pattern is exact. -#}
{% macro _pgstream_sql_query_changed(query, alias='st') -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set q = lit(query) -%}
  {%- set stored = 'pg_catalog.regexp_replace(' ~ alias ~ '.defining_query, '
      ~ lit('^\\s+') ~ ', ' ~ lit('') ~ ')' -%}
  ({{ alias }}.defining_query IS DISTINCT FROM {{ q }}
   AND NOT COALESCE(pg_catalog.starts_with({{ stored }}, {{ q }})
       AND pg_catalog.substr({{ stored }}, pg_catalog.length({{ q }}) + 1)
           ~ {{ lit('^(\\s|;|--[^\\n]*|/\\*([^*]|\\*+[^*/])*\\*+/)*$') }}, false))
{%- endmacro %}

{% macro _pgstream_sql_storage_missing(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS storage WHERE storage.oid = {{ alias }}.{{ e.relid }})
{%- endmacro %}

{#- A SELECT of the dependency rows (`dep`) of stream table `alias` whose source relation (a
    table, view or stream table) was dropped, e.g. replaced earlier in this run: it reads a dead
    relation. Views count: dbt rebuilds a `view` model by renaming the old view away and dropping
    it, and the stream table's recorded dependency (and, on pg_trickle, its inlined definition)
    still names the dropped one, so it is replaced like over a rebuilt table. Shared by the
    look-up (replace it) and the stream_table_healthy test. -#}
{% macro _pgstream_sql_dropped_sources(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  SELECT dep.source_relid FROM {{ e.dependencies }} AS dep
  WHERE dep.{{ e.id }} = {{ alias }}.{{ e.id }}
    AND dep.source_type IN ('TABLE', 'STREAM_TABLE', 'VIEW')
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS src WHERE src.oid = dep.source_relid)
{%- endmacro %}

{% macro _pgstream_sql_upstream_replaced(alias='st') -%}
  EXISTS ({{ dbt_pgstream._pgstream_sql_dropped_sources(alias) }})
{%- endmacro %}

{#- SQL (text[]) of the columns of its source that the dependency row `dep` depends on: the
    catalog's columns_used; where the engine leaves that NULL (columns_used_from_capture:
    pg_stream 0.1), the columns its change capture copies (new_<column> in the source's change
    buffer, <changes_schema>.changes_<source oid>): its trigger names each of them, so once one
    is renamed or dropped every write to the source fails until the stream table is re-created.
    Read from pg_catalog only (no right on the change buffer is needed). -#}
{% macro _pgstream_sql_columns_used(dep='dep') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.columns_used_from_capture -%}
  COALESCE({{ dep }}.columns_used, ARRAY(
      SELECT pg_catalog.substr(buf.attname::text, 5)
      FROM pg_catalog.pg_attribute AS buf
      JOIN pg_catalog.pg_class AS buf_rel ON buf_rel.oid = buf.attrelid
      JOIN pg_catalog.pg_namespace AS buf_ns ON buf_ns.oid = buf_rel.relnamespace
      WHERE buf_ns.nspname = {{ dbt_pgstream._pgstream_literal(e.changes_schema) }}
        AND buf_rel.relname = 'changes_' || {{ dep }}.source_relid::text
        AND buf.attname LIKE 'new\_%' AND buf.attnum > 0 AND NOT buf.attisdropped))
  {%- else -%}
  {{ dep }}.columns_used
  {%- endif -%}
{%- endmacro %}

{#- A SELECT (source_relid, col) of the columns stream table `alias` reads that were dropped
    from (or renamed in) a source that still exists: its refreshes fail, so it must be
    re-created (which fails clearly, keeping the old one, unless the column is back). Shared by
    the look-up and the stream_table_healthy test. -#}
{% macro _pgstream_sql_dropped_columns(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  SELECT dep.source_relid, used.col
  FROM {{ e.dependencies }} AS dep,
      unnest({{ dbt_pgstream._pgstream_sql_columns_used('dep') }}) AS used (col)
  WHERE dep.{{ e.id }} = {{ alias }}.{{ e.id }}
    AND EXISTS (SELECT 1 FROM pg_catalog.pg_class AS src WHERE src.oid = dep.source_relid)
    AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_attribute AS att
        WHERE att.attrelid = dep.source_relid AND att.attname = used.col
          AND NOT att.attisdropped)
{%- endmacro %}

{% macro _pgstream_sql_source_column_dropped(alias='st') -%}
  EXISTS ({{ dbt_pgstream._pgstream_sql_dropped_columns(alias) }})
{%- endmacro %}

{#- pg_stream's alter_stream_table() cannot clear a schedule (NULL keeps it), so going CALCULATED
    replaces there; pg_trickle alters it in place (schedule => 'calculated'). -#}
{% macro _pgstream_sql_schedule_cleared(schedule, alias='st', refresh_mode=none) -%}
  {%- if schedule is none and refresh_mode != 'IMMEDIATE'
        and not dbt_pgstream._pgstream_engine().alter_sets_calculated -%}
    {{ alias }}.schedule IS NOT NULL
  {%- else -%}
    false
  {%- endif -%}
{%- endmacro %}

{#- The whole "must replace" predicate; the same text is used by the look-up (to decide) and by
    the act statement (to re-check under the lock). -#}
{% macro _pgstream_sql_needs_replace(query, schedule, full_refresh, alias='st', options=none) -%}
  {%- if full_refresh -%}
    true
  {%- else -%}
    ({{ dbt_pgstream._pgstream_sql_query_changed(query, alias) }}
     OR {{ dbt_pgstream._pgstream_sql_replace_options_differ(options, alias) }}
     OR {{ dbt_pgstream._pgstream_sql_storage_missing(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_upstream_replaced(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_source_column_dropped(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_schedule_cleared(schedule, alias) }})
  {%- endif -%}
{%- endmacro %}


{#- CTEs `edges` (stream table -> stream table it reads) and `depth` (st_id, level: the length
    of a chain of stream tables it reads from; max(level) orders upstream first / downstream
    first). To be used inside a WITH RECURSIVE. -#}
{% macro _pgstream_depth_ctes() -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
edges AS (
    SELECT dep.{{ e.id }} AS child, up.{{ e.id }} AS parent
    FROM {{ e.dependencies }} AS dep
    JOIN {{ e.stream_tables }} AS up ON up.{{ e.relid }} = dep.source_relid
),
depth (st_id, level) AS (
    SELECT {{ e.id }}, 0 FROM {{ e.stream_tables }}
    UNION
    SELECT edges.child, depth.level + 1
    FROM depth JOIN edges ON edges.parent = depth.st_id
    WHERE depth.level < 1000
)
{%- endmacro %}


{#- The "did this act statement call the API" marker: a transaction-local setting, reset after
    the lock, set by each guarded API call (in its select list, so it is set only when the call
    runs), read by the act statement's last SELECT. -#}
{% macro _pgstream_reset_acted_sql() -%}
  SELECT pg_catalog.set_config('dbt_pgstream.acted', 'false', true)
{%- endmacro %}

{% macro _pgstream_mark_acted_sql() -%}
  pg_catalog.set_config('dbt_pgstream.acted', 'true', true) AS dbt_pgstream_acted
{%- endmacro %}

{% macro _pgstream_acted_sql() -%}
  SELECT pg_catalog.current_setting('dbt_pgstream.acted', true) = 'true' AS acted
{%- endmacro %}
