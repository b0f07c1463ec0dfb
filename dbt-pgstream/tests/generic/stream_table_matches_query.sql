{#- Generic test: fails when the rows stored in the model's stream table differ from a fresh
    evaluation of its defining query (from the engine's catalog), compared as multisets in both
    directions over the query's columns (the engine's own __pgs_ / __pgt_ columns ignored).
    Returns one row per differing row: diff ('missing' = in the query result but not stored,
    'extra' = stored but not in the query result), missing_rows and extra_rows (the totals) and
    row_data (the row as JSON); so the failure count is missing + extra. Both sides are read in
    one statement (one snapshot). Source changes not yet refreshed are differences too: run it
    after a refresh (refresh_on_run, or run-operation refresh_all_stream_tables). The stored
    query is embedded without a trailing `;` or comment (one created before the package stripped
    them, or by hand, may have them).
        models:
          - name: order_totals
            data_tests: [dbt_pgstream.stream_table_matches_query]
-#}
{% test stream_table_matches_query(model) %}
  {{ return(adapter.dispatch('test_stream_table_matches_query', 'dbt_pgstream')(model)) }}
{% endtest %}
