{#- SQL (one statement, not executed here) that drops the stream table `relation` if it exists
    and, when given, `condition` (a predicate over its catalog row, alias `st`) holds.
    Args: relation (Relation), condition (SQL text or none). -#}
{% macro drop_stream_table(relation, condition=none) -%}
  {{ return(adapter.dispatch('drop_stream_table', 'dbt_pgstream')(relation, condition)) }}
{%- endmacro %}

{% macro default__drop_stream_table(relation, condition) -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
SELECT {{ e.schema }}.drop_stream_table(name => {{ dbt_pgstream._pgstream_api_name(relation) }}),
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
FROM {{ e.stream_tables }} AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- if condition is not none %}
  AND {{ condition }}
{%- endif %}
{%- endmacro %}
