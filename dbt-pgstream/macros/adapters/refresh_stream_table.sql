{#- SQL (one statement, not executed here) that refreshes the stream table `relation` now, in its
    stored refresh mode. pg_stream raises `stream table not found:` if it does not exist. -#}
{% macro refresh_stream_table(relation) -%}
  {{ return(adapter.dispatch('refresh_stream_table', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__refresh_stream_table(relation) -%}
SELECT pgstream.refresh_stream_table({{ dbt_pgstream._pgstream_api_name(relation) }})
{%- endmacro %}
