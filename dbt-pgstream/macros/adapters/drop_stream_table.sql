{#- SQL (not executed here) that drops the stream table `relation` if it exists and, when given,
    `condition` (a predicate over its catalog row, alias `st`) holds: one statement, preceded on
    the real engines by one that keeps their scheduler away from the tables dropped
    (_pgstream_refresh_exclusion_sql), both to run in one transaction.
    Args: relation (Relation), condition (SQL text or none), cascade (bool: also drop the
    stream tables that read it where the engine refuses otherwise: pg_trickle's
    `cascade => true` (drop_needs_cascade); pg_stream's drop never refuses, and leaves them
    reading a dropped relation). -#}
{% macro drop_stream_table(relation, condition=none, cascade=false) -%}
  {{ return(adapter.dispatch('drop_stream_table', 'dbt_pgstream')(relation, condition, cascade)) }}
{%- endmacro %}

{% macro default__drop_stream_table(relation, condition, cascade=false) -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
{%- set exclusion = dbt_pgstream._pgstream_refresh_exclusion_sql(relation) -%}
{%- if exclusion %}{{ exclusion }};
{% endif -%}
SELECT {{ e.schema }}.drop_stream_table(name => {{ dbt_pgstream._pgstream_api_name(relation) }}
    {%- if cascade and e.drop_needs_cascade %}, cascade => true{% endif %}),
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
FROM {{ e.stream_tables }} AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- if condition is not none %}
  AND {{ condition }}
{%- endif %}
{%- endmacro %}
