{#- SQL (one statement, not executed here) that alters the stream table `relation`, passing only
    the arguments given (none = keep the stored value). Does nothing if it does not exist.
    Args: relation (Relation); schedule (text; the string 'CALCULATED' goes back to a CALCULATED
    schedule where the engine can do that in place: pg_trickle); refresh_mode (text); status
    (text: 'ACTIVE' or 'SUSPENDED'). Named arguments only: pg_trickle's alter_stream_table has
    `query` as its second parameter. -#}
{% macro alter_stream_table(relation, schedule=none, refresh_mode=none, status=none) -%}
  {{ return(adapter.dispatch('alter_stream_table', 'dbt_pgstream')(
      relation, schedule, refresh_mode, status)) }}
{%- endmacro %}

{% macro default__alter_stream_table(relation, schedule, refresh_mode, status) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set args = [] -%}
  {%- if schedule is not none -%}
    {%- if schedule == 'CALCULATED' -%}
      {%- do args.append('schedule => ' ~ dbt_pgstream._pgstream_schedule_arg(none, e)) -%}
    {%- else -%}
      {%- do args.append('schedule => ' ~ dbt_pgstream._pgstream_literal(schedule)) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if refresh_mode is not none -%}
    {%- do args.append('refresh_mode => ' ~ dbt_pgstream._pgstream_literal(refresh_mode)) -%}
  {%- endif -%}
  {%- if status is not none -%}
    {%- do args.append('status => ' ~ dbt_pgstream._pgstream_literal(status)) -%}
  {%- endif -%}
SELECT {{ e.schema }}.alter_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }}
    {%- for arg in args %},
    {{ arg }}
    {%- endfor %}),
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
FROM {{ e.stream_tables }} AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- endmacro %}
