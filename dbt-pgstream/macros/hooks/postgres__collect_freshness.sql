{#- Override of dbt's `collect_freshness` for PostgreSQL (dbt >= 1.6), enabled per project with
        dispatch:
          - macro_namespace: dbt
            search_order: ['<your_project>', 'dbt_pgstream', 'dbt']
    For a source that is a pg_stream stream table, max_loaded_at is the catalog's last_refresh_at
    (NULL = never refreshed, which dbt reads as infinitely old); loaded_at_field and the filter
    are ignored for it, but dbt still needs a loaded_at_field (any value) to check the source.
    For any other relation, or a database without pg_stream, it is exactly dbt's
    default__collect_freshness. -#}
{% macro postgres__collect_freshness(source, loaded_at_field, filter) -%}
  {{ return(adapter.dispatch('stream_table_collect_freshness', 'dbt_pgstream')(
      source, loaded_at_field, filter)) }}
{%- endmacro %}

{% macro default__stream_table_collect_freshness(source, loaded_at_field, filter) -%}
  {%- call statement('pgstream_freshness_installed', fetch_result=True, auto_begin=False) -%}
    SELECT pg_catalog.to_regclass('pgstream.pgs_stream_tables') IS NOT NULL AS installed
  {%- endcall -%}
  {%- if load_result('pgstream_freshness_installed').table.rows[0][0] is sameas true -%}
    {%- call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
      SELECT CASE WHEN st.is_populated THEN st.last_refresh_at END AS max_loaded_at,
             {{ current_timestamp() }} AS snapshotted_at
      FROM pgstream.pgs_stream_tables AS st
      WHERE {{ dbt_pgstream._pgstream_catalog_match(source) }}
    {%- endcall -%}
    {%- set result = load_result('collect_freshness') -%}
    {%- if result.table.rows | length == 1 -%}
      {{ return(result) }}
    {%- endif -%}
  {%- endif -%}
  {{ return(dbt.default__collect_freshness(source, loaded_at_field, filter)) }}
{%- endmacro %}
