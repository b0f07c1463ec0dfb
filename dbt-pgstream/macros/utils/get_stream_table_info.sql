{#- The catalog row of the stream table `relation` as a dict (the engine's own id, schema and
    name columns: pgs_id, pgs_schema, pgs_name on pg_stream, pgt_id, pgt_schema, pgt_name on
    pg_trickle; the same three as schema_name, table_name, engine_id on every engine; and
    defining_query, schedule, refresh_mode, status, is_populated, consecutive_errors,
    data_timestamp, last_refresh_at), or none when there is none. One query. Values come back
    through agate, so text that looks like a number (a schedule of '90') may come back as one. -#}
{% macro get_stream_table_info(relation) -%}
  {{ return(adapter.dispatch('get_stream_table_info', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__get_stream_table_info(relation) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_stream_table_info', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT st.{{ e.id }}, st.{{ e.st_schema }}, st.{{ e.st_name }},
           st.{{ e.id }} AS engine_id, st.{{ e.st_schema }} AS schema_name,
           st.{{ e.st_name }} AS table_name, st.defining_query, st.schedule,
           st.refresh_mode, st.status, st.is_populated, st.consecutive_errors,
           st.data_timestamp, st.last_refresh_at
    FROM {{ e.stream_tables }} AS st
    WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
  {%- endcall -%}
  {%- set table = load_result('pgstream_stream_table_info').table -%}
  {%- if table.rows | length == 0 -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set info = {} -%}
  {%- for column in table.column_names -%}
    {%- do info.update({column: table.rows[0][column]}) -%}
  {%- endfor -%}
  {{ return(info) }}
{%- endmacro %}
