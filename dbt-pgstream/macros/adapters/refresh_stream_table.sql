{#- SQL (one statement, not executed here) that refreshes the stream table `relation` now, in its
    stored refresh mode. The engine raises `stream table not found:` if it does not exist.
    Args: relation (Relation). -#}
{% macro refresh_stream_table(relation) -%}
  {{ return(adapter.dispatch('refresh_stream_table', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__refresh_stream_table(relation) -%}
SELECT {{ dbt_pgstream._pgstream_fn('refresh_stream_table') }}(name => {{ dbt_pgstream._pgstream_api_name(relation) }})
{%- endmacro %}
