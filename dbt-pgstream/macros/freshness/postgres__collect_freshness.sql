{#- Override of dbt's `collect_freshness` for PostgreSQL (dbt >= 1.6), enabled per project with
        dispatch:
          - macro_namespace: dbt
            search_order: ['<your_project>', 'dbt_pgstream', 'dbt']
    For a source that is a stream table (pg_stream or pg_trickle), max_loaded_at is the catalog's last_refresh_at
    (NULL = never refreshed, which dbt reads as infinitely old); loaded_at_field and the filter
    are ignored for it, but dbt still needs a loaded_at_field (any value) to check the source.
    For any other relation, or a database without an engine, it is exactly dbt's
    default__collect_freshness. -#}
{% macro postgres__collect_freshness(source, loaded_at_field, filter) -%}
  {{ return(adapter.dispatch('stream_table_collect_freshness', 'dbt_pgstream')(
      source, loaded_at_field, filter)) }}
{%- endmacro %}

{% macro default__stream_table_collect_freshness(source, loaded_at_field, filter) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.engine is not none -%}
    {%- call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
      SELECT CASE WHEN st.is_populated THEN st.last_refresh_at END AS max_loaded_at,
             {{ current_timestamp() }} AS snapshotted_at
      FROM {{ e.stream_tables }} AS st
      WHERE {{ dbt_pgstream._pgstream_catalog_match(source) }}
    {%- endcall -%}
    {%- set result = load_result('collect_freshness') -%}
    {%- if result.table.rows | length == 1 -%}
      {{ return(result) }}
    {%- endif -%}
  {%- endif -%}
  {{ return(dbt.default__collect_freshness(source, loaded_at_field, filter)) }}
{%- endmacro %}
