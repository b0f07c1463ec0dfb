{#- The implementation of the generic test stream_table_healthy (tests/generic/stream_table_healthy.sql), dispatched:
    override it as default__test_stream_table_healthy in your project. -#}
{% macro default__test_stream_table_healthy(model) %}
{%- set model = dbt_pgstream._pgstream_tested_relation(model) -%}
{%- set e = dbt_pgstream._pgstream_engine() -%}
{%- set lit = dbt_pgstream._pgstream_literal -%}
WITH st AS (
    SELECT st.* FROM {{ e.stream_tables }} AS st
    WHERE {{ dbt_pgstream._pgstream_catalog_match(model) }}
)
SELECT {{ dbt_pgstream._pgstream_literal(model.schema ~ '.' ~ model.identifier) }} AS stream_table,
       problem
FROM (
    SELECT 'not a stream table' AS problem
    WHERE NOT EXISTS (SELECT 1 FROM st)
    UNION ALL
    SELECT 'status is ' || st.status || ', not ACTIVE' FROM st WHERE st.status <> 'ACTIVE'
    UNION ALL
    SELECT 'not populated (never refreshed)' FROM st WHERE NOT st.is_populated
    UNION ALL
    SELECT st.consecutive_errors::text || ' consecutive refresh error(s)'
    FROM st WHERE st.consecutive_errors > 0
    UNION ALL
    SELECT 'reads a relation that was dropped (oid ' || gone.source_relid::text
           || '): re-create it (dbt run)'
    FROM st CROSS JOIN LATERAL ({{ dbt_pgstream._pgstream_sql_dropped_sources('st') }}) AS gone
    UNION ALL
    SELECT {{ lit('its change capture copies column ' if e.columns_used_from_capture
                  else 'reads column ') }}
           || gone.col || ' of ' || gone.source_relid::regclass::text
           || {{ lit(', which no longer exists (writes to it fail): re-create it (dbt run)'
                     if e.columns_used_from_capture else ', which no longer exists') }}
    FROM st CROSS JOIN LATERAL ({{ dbt_pgstream._pgstream_sql_dropped_columns('st') }}) AS gone
) AS problems
{% endmacro %}
