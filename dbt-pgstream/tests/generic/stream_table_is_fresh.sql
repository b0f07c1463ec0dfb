{#- Generic test: fails (one row) when the model's (or source's) stream table is stale,
    was never refreshed (not populated) or does not exist.
    Stale means: the engine's staleness (stream_tables_info.staleness: now() - data_timestamp
    on pg_stream, now() - last_refresh_at on pg_trickle) exceeds `max_staleness` (a
    duration: '30s', '10m', '1h30m', '2d', '1w' or a number of seconds), by default the table's
    own schedule. A cron or CALCULATED schedule has no duration: without max_staleness the test
    fails and says so.
        models:
          - name: order_totals
            data_tests:
              - dbt_pgstream.stream_table_is_fresh                          # its own schedule
              - dbt_pgstream.stream_table_is_fresh: {max_staleness: '10m'}
-#}
{% test stream_table_is_fresh(model, max_staleness=none) %}
  {{ return(adapter.dispatch('test_stream_table_is_fresh', 'dbt_pgstream')(model, max_staleness)) }}
{% endtest %}
