{#- Generic test: fails, one row per problem, unless the model (or source) is a stream
    table that exists, is ACTIVE, is populated and has no consecutive refresh errors. So it fails
    for SUSPENDED, ERROR and INITIALIZING tables and for one that was never refreshed.
        models:
          - name: order_totals
            data_tests: [dbt_pgstream.stream_table_healthy]      # `tests:` on dbt < 1.8
-#}
{% test stream_table_healthy(model) %}
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
    SELECT 'reads a relation that was dropped (oid ' || dep.source_relid::text
           || '): re-create it (dbt run)'
    FROM st JOIN {{ e.dependencies }} AS dep ON dep.{{ e.id }} = st.{{ e.id }}
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = dep.source_relid)
    UNION ALL
    SELECT {{ lit('its change capture copies column ' if e.columns_used_from_capture
                  else 'reads column ') }}
           || used.col || ' of ' || dep.source_relid::regclass::text
           || {{ lit(', which no longer exists (writes to it fail): re-create it (dbt run)'
                     if e.columns_used_from_capture else ', which no longer exists') }}
    FROM st JOIN {{ e.dependencies }} AS dep ON dep.{{ e.id }} = st.{{ e.id }}
    CROSS JOIN LATERAL unnest({{ dbt_pgstream._pgstream_sql_columns_used('dep') }}) AS used (col)
    WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = dep.source_relid)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                      WHERE a.attrelid = dep.source_relid AND a.attname = used.col
                        AND NOT a.attisdropped)
) AS problems
{% endtest %}
