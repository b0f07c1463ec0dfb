{#- Generic test: fails (one row per problem) unless the model is a registered pg_stream stream
    table that is populated, ACTIVE and has no consecutive refresh errors.
        models:
          - name: order_totals
            data_tests: [dbt_pgstream.stream_table_is_healthy]      # `tests:` on dbt < 1.8
-#}
{% test stream_table_is_healthy(model) %}
SELECT problem
FROM (
    SELECT CASE
        WHEN st.pgs_id IS NULL THEN 'not a pg_stream stream table'
        WHEN NOT st.is_populated THEN 'not populated'
        WHEN st.status <> 'ACTIVE' THEN 'status is ' || st.status
        WHEN st.consecutive_errors > 0
            THEN st.consecutive_errors::text || ' consecutive refresh errors'
    END AS problem
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN pgstream.pgs_stream_tables AS st
        ON {{ dbt_pgstream._pgstream_catalog_match(model) }}
) AS checks
WHERE problem IS NOT NULL
{% endtest %}
