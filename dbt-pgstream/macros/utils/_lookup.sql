{#- Private: the materialization's ONE catalog round trip. Returns a dict with what exists under
    `relation`'s schema and name (relation_kind: none, 'table', 'view', ...; is_stream_table) and, for a
    stream table, whether it must be replaced (and why) or altered (and from what). Every
    comparison happens in SQL, so no query text travels back through agate. -#}
{% macro _pgstream_lookup(relation, cfg, query) %}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_lookup', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT
        CASE rel.relkind
            WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
            ELSE 'relation of relkind ' || rel.relkind::text
        END AS relation_kind,
        (st.{{ e.id }} IS NOT NULL) AS is_stream_table,
        EXISTS (SELECT 1 FROM pg_catalog.pg_namespace AS sch
                WHERE sch.nspname = {{ lit(relation.schema) }}) AS schema_exists,
        COALESCE(st.schedule, 'CALCULATED') AS old_schedule,
        st.refresh_mode AS old_refresh_mode,
        st.status AS old_status,
        COALESCE({{ dbt_pgstream._pgstream_sql_query_changed(query) }}, false) AS query_changed,
        COALESCE({{ dbt_pgstream._pgstream_sql_storage_missing() }}, false) AS storage_missing,
        COALESCE({{ dbt_pgstream._pgstream_sql_upstream_replaced() }}, false) AS upstream_replaced,
        COALESCE({{ dbt_pgstream._pgstream_sql_source_column_dropped() }}, false)
            AS source_column_dropped,
        COALESCE({{ dbt_pgstream._pgstream_sql_schedule_cleared(cfg.schedule) }}, false)
            AS schedule_cleared,
        COALESCE(st.schedule IS DISTINCT FROM {{ lit(cfg.schedule) }}, false) AS schedule_changed,
        COALESCE(st.refresh_mode IS DISTINCT FROM {{ lit(cfg.refresh_mode) }}, false)
            AS refresh_mode_changed,
        COALESCE(st.status IS DISTINCT FROM {{ lit(cfg.status) }}, false) AS status_changed,
        {{ dbt_pgstream._pgstream_sql_managed_indexes() }} AS managed_indexes,
        {{ dbt_pgstream._pgstream_sql_current_grants() }} AS current_grants,
        {{ dbt_pgstream._pgstream_sql_current_comments() }} AS current_comments,
        {{ dbt_pgstream._pgstream_sql_dependent_stream_tables() }} AS dependent_stream_tables
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN (pg_catalog.pg_class AS rel
               JOIN pg_catalog.pg_namespace AS ns ON ns.oid = rel.relnamespace)
        ON ns.nspname = {{ lit(relation.schema) }} AND rel.relname = {{ lit(relation.identifier) }}
    LEFT JOIN {{ e.stream_tables }} AS st
        ON {{ dbt_pgstream._pgstream_catalog_match(relation) }}
  {%- endcall -%}
  {%- set row = load_result('pgstream_lookup').table.rows[0] -%}
  {%- set state = {} -%}
  {%- for column in ['relation_kind', 'is_stream_table', 'schema_exists', 'old_schedule', 'old_refresh_mode',
                     'old_status', 'query_changed', 'storage_missing', 'upstream_replaced',
                     'source_column_dropped',
                     'schedule_cleared', 'schedule_changed', 'refresh_mode_changed',
                     'status_changed'] -%}
    {%- set value = row[column] -%}
    {%- if value is none or value is sameas true or value is sameas false -%}
      {%- do state.update({column: value}) -%}
    {%- else -%}
      {%- do state.update({column: value | string}) -%}
    {%- endif -%}
  {%- endfor -%}
  {#- JSON text columns (indexes, grants, comments: see _indexes.sql, _grants_docs.sql) -#}
  {%- for column, empty in [('managed_indexes', []), ('current_grants', {}),
                            ('current_comments', {}), ('dependent_stream_tables', [])] -%}
    {%- set value = row[column] -%}
    {%- do state.update({column: fromjson(value | string) if value is not none else empty}) -%}
  {%- endfor -%}
  {{ return(state) }}
{% endmacro %}


{#- JSON text: [[schema, name], ...] of the stream tables that read this one, where a replace
    drops them with it (drop_needs_cascade: pg_trickle), for the run's log and dbt's cache;
    NULL elsewhere (pg_stream leaves them in place, reading a dropped relation until their own
    model replaces them). -#}
{% macro _pgstream_sql_dependent_stream_tables(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.drop_needs_cascade -%}
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(down.{{ e.st_schema }},
                                                          down.{{ e.st_name }})
                              ORDER BY down.{{ e.st_schema }}, down.{{ e.st_name }})::text
   FROM {{ e.stream_tables }} AS down
   WHERE down.{{ e.id }} <> {{ alias }}.{{ e.id }}
     AND EXISTS (SELECT 1 FROM {{ e.dependencies }} AS dep
                 WHERE dep.{{ e.id }} = down.{{ e.id }}
                   AND dep.source_relid = {{ alias }}.{{ e.relid }}))
  {%- else -%}
  NULL::text
  {%- endif -%}
{%- endmacro %}
