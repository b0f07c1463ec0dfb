{#- SQL (one statement, not executed here) that creates the stream table `relation` defined by
    `sql`, unless a stream table of that schema and name already exists (so that a process that
    lost a race for the advisory lock becomes a no-op instead of failing).
    Args: relation (Relation), sql (text: the defining query; a trailing `;` and trailing
    comments are removed, as the materialization does), schedule (text, or none for
    CALCULATED: sent as NULL to pg_stream and as 'calculated' to pg_trickle), refresh_mode (text),
    initialize (bool). Named arguments only, in the engine's schema (_engine.sql). -#}
{% macro create_stream_table(relation, sql, schedule='1m', refresh_mode='DIFFERENTIAL', initialize=true) -%}
  {{ return(adapter.dispatch('create_stream_table', 'dbt_pgstream')(
      relation, sql, schedule, refresh_mode, initialize)) }}
{%- endmacro %}

{% macro default__create_stream_table(relation, sql, schedule, refresh_mode, initialize) -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
SELECT {{ e.schema }}.create_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }},
    query => {{ dbt_pgstream._pgstream_literal(dbt_pgstream._pgstream_query_text(sql)) }},
    schedule => {{ dbt_pgstream._pgstream_schedule_arg(schedule, e) }},
    refresh_mode => {{ dbt_pgstream._pgstream_literal(refresh_mode) }},
    initialize => {{ 'true' if initialize else 'false' }}),
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
WHERE NOT EXISTS (
    SELECT 1 FROM {{ e.stream_tables }} AS st
    WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }})
{%- endmacro %}
