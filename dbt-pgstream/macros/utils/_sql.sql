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
  {{- dbt_pgstream._pgstream_literal(relation.schema ~ '.' ~ relation.identifier) -}}
{%- endmacro %}


{#- Predicate selecting the catalog row of `relation` (schema and name compared apart). -#}
{% macro _pgstream_catalog_match(relation, alias='st') -%}
  {{ alias }}.pgs_schema = {{ dbt_pgstream._pgstream_literal(relation.schema) }}
    AND {{ alias }}.pgs_name = {{ dbt_pgstream._pgstream_literal(relation.identifier) }}
{%- endmacro %}


{#- Transaction-scoped advisory lock serialising every check-then-act on one stream table, so two
    dbt processes deploying the same model at once take turns. -#}
{% macro _pgstream_lock_sql(relation) -%}
  SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended({{
    dbt_pgstream._pgstream_literal('dbt_pgstream:' ~ relation.schema ~ '.' ~ relation.identifier)
  }}, 0))
{%- endmacro %}


{#- The pg_stream SQL API version this package is written against (shared/pgstream-api.md). -#}
{% macro _pgstream_api_version() -%}v0.1{%- endmacro %}


{#- The contract's objects (in schema pgstream) the package calls or reads. Names are kept
    unqualified here and qualified at run time, so the check's text never reads like a call. -#}
{% macro _pgstream_required_objects() %}
  {{ return({
      'functions': [
          'create_stream_table(text,text,text,text,boolean)',
          'alter_stream_table(text,text,text,text)',
          'drop_stream_table(text)',
          'refresh_stream_table(text)',
      ],
      'tables': ['pgs_stream_tables', 'pgs_dependencies', 'pg_stat_stream_tables'],
  }) }}
{% endmacro %}


{#- One clear error, instead of "schema pgstream does not exist" or "permission denied for
    schema pgstream", sent in the same round trip as the statement that follows it. In order:
    pg_stream missing; a role without the rights the package needs (USAGE on schema pgstream,
    SELECT on the catalog, EXECUTE on the API functions: all missing ones are named); an API of
    another version (a function the package calls is missing or has another signature). -#}
{% macro _pgstream_assert_installed_sql() -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set required = dbt_pgstream._pgstream_required_objects() -%}
  {%- set api = dbt_pgstream._pgstream_api_version() -%}
  {%- set not_installed = 'dbt_pgstream: pg_stream is not installed in database "%s" (no table '
      ~ 'pgstream.pgs_stream_tables).%s Install the pg_stream extension in this database '
      ~ '(CREATE EXTENSION pg_stream;, run by a superuser) before running stream_table models '
      ~ 'or dbt_pgstream operations.' -%}
  {%- set denied = 'dbt_pgstream: role "%s" lacks rights dbt_pgstream needs in database "%s": '
      ~ '%s. Grant them (see "Grants a dbt role needs" in the dbt-pgstream README), e.g. '
      ~ 'GRANT USAGE ON SCHEMA pgstream TO %s; GRANT SELECT ON ALL TABLES IN SCHEMA pgstream '
      ~ 'TO %s;' -%}
  {%- set mismatch = 'dbt_pgstream: the pg_stream in database "%s" (%s) does not provide the '
      ~ 'pg_stream SQL API ' ~ api ~ ' this package requires: %s. Install or upgrade to a '
      ~ 'pg_stream that implements API ' ~ api ~ ', or use a dbt_pgstream release made for '
      ~ 'your version.' -%}
  {%- set body -%}
DECLARE
  v_denied text[] := '{}';
  v_missing text[] := '{}';
  v_obj text;
  v_version text;
  v_role text := pg_catalog.quote_ident(current_user::text);
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgstream') THEN
    RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(not_installed) }},
      pg_catalog.current_database(),
      CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgtrickle')
           THEN ' Found schema pgtrickle (pg_trickle, the renamed extension): dbt_pgstream '
                || 'targets the pg_stream API (schema pgstream).' ELSE '' END);
  END IF;
  IF NOT pg_catalog.has_schema_privilege('pgstream', 'USAGE') THEN
    v_denied := v_denied || 'USAGE on schema pgstream'::text;
  ELSE
    IF pg_catalog.to_regclass('pgstream.pgs_stream_tables') IS NULL THEN
      RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(not_installed) }},
        pg_catalog.current_database(), '');
    END IF;
    FOREACH v_obj IN ARRAY ARRAY[{% for t in required.tables %}{{ lit(t) }}{{ ', ' if not loop.last }}{% endfor %}]::text[] LOOP
      v_obj := 'pgstream.' || v_obj;
      IF pg_catalog.to_regclass(v_obj) IS NULL THEN
        v_missing := v_missing || ('relation ' || v_obj || ' is missing');
      ELSIF NOT pg_catalog.has_table_privilege(v_obj, 'SELECT') THEN
        v_denied := v_denied || ('SELECT on ' || v_obj);
      END IF;
    END LOOP;
    FOREACH v_obj IN ARRAY ARRAY[{% for f in required.functions %}{{ lit(f) }}{{ ', ' if not loop.last }}{% endfor %}]::text[] LOOP
      v_obj := 'pgstream.' || v_obj;
      IF pg_catalog.to_regprocedure(v_obj) IS NULL THEN
        v_missing := v_missing || ('function ' || v_obj || ' is missing'
          || COALESCE(' (found ' || (
               SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid)
               FROM pg_catalog.pg_proc AS p
               WHERE p.pronamespace = 'pgstream'::regnamespace
                 AND p.proname = pg_catalog.split_part(pg_catalog.split_part(v_obj, '(', 1), '.', 2)
             ) || ')', ''));
      ELSIF NOT pg_catalog.has_function_privilege(v_obj, 'EXECUTE') THEN
        v_denied := v_denied || ('EXECUTE on function ' || v_obj);
      END IF;
    END LOOP;
  END IF;
  IF pg_catalog.cardinality(v_denied) > 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
      MESSAGE = pg_catalog.format({{ lit(denied) }}, current_user, pg_catalog.current_database(),
                                  pg_catalog.array_to_string(v_denied, ', '), v_role, v_role);
  END IF;
  IF pg_catalog.cardinality(v_missing) > 0 THEN
    SELECT 'pg_stream extension version ' || e.extversion INTO v_version
    FROM pg_catalog.pg_extension AS e WHERE e.extname = 'pg_stream';
    RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(mismatch) }},
      pg_catalog.current_database(),
      COALESCE(v_version, 'schema pgstream, no pg_stream extension: e.g. pgstream-lite'),
      pg_catalog.array_to_string(v_missing, '; '));
  END IF;
END
  {%- endset -%}
  DO {{ lit(body) }}
{%- endmacro %}


{#- Predicates over a catalog row `st` telling why an existing stream table must be replaced. -#}
{% macro _pgstream_sql_query_changed(query, alias='st') -%}
  {{ alias }}.defining_query IS DISTINCT FROM {{ dbt_pgstream._pgstream_literal(query) }}
{%- endmacro %}

{% macro _pgstream_sql_storage_missing(alias='st') -%}
  NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS storage WHERE storage.oid = {{ alias }}.pgs_relid)
{%- endmacro %}

{#- An upstream table or stream table this one reads was dropped (e.g. replaced earlier in this
    run): its recorded oid no longer exists, so this stream table reads a dead relation. -#}
{% macro _pgstream_sql_upstream_replaced(alias='st') -%}
  EXISTS (
      SELECT 1 FROM pgstream.pgs_dependencies AS dep
      WHERE dep.pgs_id = {{ alias }}.pgs_id
        AND dep.source_type IN ('TABLE', 'STREAM_TABLE')
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS src WHERE src.oid = dep.source_relid))
{%- endmacro %}

{#- A column the stream table reads was dropped from (or renamed in) one of its sources: its
    refreshes fail, so it must be re-created (which fails clearly, keeping the old one, unless the
    column is back). -#}
{% macro _pgstream_sql_source_column_dropped(alias='st') -%}
  EXISTS (
      SELECT 1 FROM pgstream.pgs_dependencies AS dep, unnest(dep.columns_used) AS used (col)
      WHERE dep.pgs_id = {{ alias }}.pgs_id
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_class AS src WHERE src.oid = dep.source_relid)
        AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute AS att
            WHERE att.attrelid = dep.source_relid AND att.attname = used.col
              AND NOT att.attisdropped))
{%- endmacro %}

{#- alter_stream_table() cannot clear a schedule (NULL keeps it), so going CALCULATED replaces. -#}
{% macro _pgstream_sql_schedule_cleared(schedule, alias='st') -%}
  {%- if schedule is none -%}
    {{ alias }}.schedule IS NOT NULL
  {%- else -%}
    false
  {%- endif -%}
{%- endmacro %}

{#- The whole "must replace" predicate; the same text is used by the look-up (to decide) and by
    the act statement (to re-check under the lock). -#}
{% macro _pgstream_sql_needs_replace(query, schedule, full_refresh, alias='st') -%}
  {%- if full_refresh -%}
    true
  {%- else -%}
    ({{ dbt_pgstream._pgstream_sql_query_changed(query, alias) }}
     OR {{ dbt_pgstream._pgstream_sql_storage_missing(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_upstream_replaced(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_source_column_dropped(alias) }}
     OR {{ dbt_pgstream._pgstream_sql_schedule_cleared(schedule, alias) }})
  {%- endif -%}
{%- endmacro %}


{#- CTEs `edges` (stream table -> stream table it reads) and `depth` (pgs_id, level: the length
    of a chain of stream tables it reads from; max(level) orders upstream first / downstream
    first). To be used inside a WITH RECURSIVE. -#}
{% macro _pgstream_depth_ctes() -%}
edges AS (
    SELECT dep.pgs_id AS child, up.pgs_id AS parent
    FROM pgstream.pgs_dependencies AS dep
    JOIN pgstream.pgs_stream_tables AS up ON up.pgs_relid = dep.source_relid
),
depth (pgs_id, level) AS (
    SELECT pgs_id, 0 FROM pgstream.pgs_stream_tables
    UNION
    SELECT edges.child, depth.level + 1
    FROM depth JOIN edges ON edges.parent = depth.pgs_id
    WHERE depth.level < 1000
)
{%- endmacro %}
