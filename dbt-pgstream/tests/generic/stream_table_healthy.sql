{#- Generic test: fails, one row per problem, unless the model (or source) is a stream
    table that exists, is ACTIVE, is populated and has no consecutive refresh errors. So it fails
    for SUSPENDED, ERROR and INITIALIZING tables and for one that was never refreshed.
        models:
          - name: order_totals
            data_tests: [dbt_pgstream.stream_table_healthy]      # `tests:` on dbt < 1.8
-#}
{% test stream_table_healthy(model) %}
  {{ return(adapter.dispatch('test_stream_table_healthy', 'dbt_pgstream')(model)) }}
{% endtest %}
