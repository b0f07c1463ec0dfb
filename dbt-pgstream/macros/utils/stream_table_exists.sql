{#- True when the engine (pg_stream or pg_trickle) has a stream table of `relation`'s schema and name (one query). -#}
{% macro stream_table_exists(relation) -%}
  {{ return(adapter.dispatch('stream_table_exists', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__stream_table_exists(relation) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_stream_table_exists', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT EXISTS (
        SELECT 1 FROM {{ e.stream_tables }} AS st
        WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}) AS st_exists
  {%- endcall -%}
  {%- set table = load_result('pgstream_stream_table_exists').table -%}
  {{ return(table.rows[0][0] is sameas true) }}
{%- endmacro %}
