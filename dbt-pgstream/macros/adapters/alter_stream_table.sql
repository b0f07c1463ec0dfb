{#- SQL (one statement, not executed here) that alters the stream table `relation`, passing only
    the arguments given (none = keep the stored value). Does nothing if it does not exist. -#}
{% macro alter_stream_table(relation, schedule=none, refresh_mode=none, status=none) -%}
  {{ return(adapter.dispatch('alter_stream_table', 'dbt_pgstream')(
      relation, schedule, refresh_mode, status)) }}
{%- endmacro %}

{% macro default__alter_stream_table(relation, schedule, refresh_mode, status) -%}
  {%- set args = [] -%}
  {%- if schedule is not none -%}
    {%- do args.append('schedule => ' ~ dbt_pgstream._pgstream_literal(schedule)) -%}
  {%- endif -%}
  {%- if refresh_mode is not none -%}
    {%- do args.append('refresh_mode => ' ~ dbt_pgstream._pgstream_literal(refresh_mode)) -%}
  {%- endif -%}
  {%- if status is not none -%}
    {%- do args.append('status => ' ~ dbt_pgstream._pgstream_literal(status)) -%}
  {%- endif -%}
SELECT pgstream.alter_stream_table(
    name => {{ dbt_pgstream._pgstream_api_name(relation) }}
    {%- for arg in args %},
    {{ arg }}
    {%- endfor %})
FROM pgstream.pgs_stream_tables AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- endmacro %}
