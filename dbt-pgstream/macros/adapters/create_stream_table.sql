{#- SQL (one statement, not executed here) that creates the stream table `relation` defined by
    `sql`, unless a stream table of that schema and name already exists (so that a process that
    lost a race for the advisory lock becomes a no-op instead of failing).
    Args: relation (Relation), sql (text: the defining query; a trailing `;` and trailing
    comments are removed, as the materialization does), schedule (text, or none for
    CALCULATED: sent as NULL to pg_stream and as 'calculated' to pg_trickle), refresh_mode (text),
    initialize (bool), options (dict of pg_trickle's options, key -> value, as validated by the
    model config (_options.sql); those create_stream_table() does not take, the fuse settings,
    are set by alter_stream_table() in the same statement). Named arguments only, in the
    engine's schema (_engine.sql). -#}
{% macro create_stream_table(relation, sql, schedule='1m', refresh_mode='DIFFERENTIAL', initialize=true, options=none) -%}
  {{ return(adapter.dispatch('create_stream_table', 'dbt_pgstream')(
      relation, sql, schedule, refresh_mode, initialize, options)) }}
{%- endmacro %}

{% macro default__create_stream_table(relation, sql, schedule, refresh_mode, initialize, options=none) -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
{%- set after = dbt_pgstream._pgstream_option_args(options, 'after_create') -%}
SELECT {{ e.schema }}.create_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }},
    query => {{ dbt_pgstream._pgstream_literal(dbt_pgstream._pgstream_query_text(sql)) }},
    schedule => {{ dbt_pgstream._pgstream_schedule_arg(schedule, e) }},
    refresh_mode => {{ dbt_pgstream._pgstream_literal(refresh_mode) }},
    initialize => {{ 'true' if initialize else 'false' }}
    {%- for arg in dbt_pgstream._pgstream_option_args(options, 'create') %},
    {{ arg }}
    {%- endfor %}),
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
WHERE NOT EXISTS (
    SELECT 1 FROM {{ e.stream_tables }} AS st
    WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }})
{%- if after %};
SELECT {{ e.schema }}.alter_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }}
    {%- for arg in after %},
    {{ arg }}
    {%- endfor %})
FROM {{ e.stream_tables }} AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- endif %}
{%- endmacro %}
