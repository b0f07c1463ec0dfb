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


{#- One clear error, instead of "schema pgstream does not exist", when pg_stream is missing. Sent
    in the same round trip as the statement that follows it. -#}
{% macro _pgstream_assert_installed_sql() -%}
  {%- set message = 'dbt_pgstream: pg_stream is not installed in database "%" (no table '
      ~ 'pgstream.pgs_stream_tables). Install the pg_stream extension in this database '
      ~ '(CREATE EXTENSION pg_stream;, run by a superuser) before running stream_table models '
      ~ 'or dbt_pgstream operations.' -%}
  {%- set body = "BEGIN IF pg_catalog.to_regclass('pgstream.pgs_stream_tables') IS NULL THEN "
      ~ "RAISE EXCEPTION " ~ dbt_pgstream._pgstream_literal(message)
      ~ ", pg_catalog.current_database(); END IF; END" -%}
  DO {{ dbt_pgstream._pgstream_literal(body) }}
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
     OR {{ dbt_pgstream._pgstream_sql_schedule_cleared(schedule, alias) }})
  {%- endif -%}
{%- endmacro %}
