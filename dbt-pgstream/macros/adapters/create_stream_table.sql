{#- SQL (one statement, not executed here) that creates the stream table `relation` defined by
    `sql`, unless a stream table of that schema and name already exists (so that a process that
    lost a race for the advisory lock becomes a no-op instead of failing). -#}
{% macro create_stream_table(relation, sql, schedule='1m', refresh_mode='DIFFERENTIAL', initialize=true) -%}
  {{ return(adapter.dispatch('create_stream_table', 'dbt_pgstream')(
      relation, sql, schedule, refresh_mode, initialize)) }}
{%- endmacro %}

{% macro default__create_stream_table(relation, sql, schedule, refresh_mode, initialize) -%}
SELECT pgstream.create_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }},
    query => {{ dbt_pgstream._pgstream_literal(sql) }},
    schedule => {{ dbt_pgstream._pgstream_literal(schedule) }},
    refresh_mode => {{ dbt_pgstream._pgstream_literal(refresh_mode) }},
    initialize => {{ 'true' if initialize else 'false' }})
WHERE NOT EXISTS (
    SELECT 1 FROM pgstream.pgs_stream_tables AS st
    WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }})
{%- endmacro %}
