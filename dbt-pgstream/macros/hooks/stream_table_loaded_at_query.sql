{#- SQL for a source's `loaded_at_query` (dbt >= 1.10): the stream table's last_refresh_at from
    the pg_stream catalog, so `dbt source freshness` measures the age of the last refresh.
        sources:
          - name: marts
            config:
              freshness: {warn_after: {count: 10, period: minute}, error_after: {count: 1, period: hour}}
              loaded_at_query: "{{ dbt_pgstream.stream_table_loaded_at_query() }}"
            tables: [{name: order_totals}]
    `relation` defaults to `this` (the source table being checked). A stream table that was never
    refreshed gives NULL, which dbt reads as "infinitely old" (error/warn, never fresh); a
    relation that is not a stream table makes the query fail with pg_stream's
    `stream table not found: schema.table`. -#}
{% macro stream_table_loaded_at_query(relation=none) -%}
  {{ return(adapter.dispatch('stream_table_loaded_at_query', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__stream_table_loaded_at_query(relation) -%}
  {%- set relation = relation if relation is not none else this -%}
  {#- get_staleness() raises for a missing stream table and is NULL until the first refresh. -#}
SELECT CASE WHEN pgstream.get_staleness({{ dbt_pgstream._pgstream_api_name(relation) }}) IS NOT NULL
            THEN (SELECT st.last_refresh_at FROM pgstream.pgs_stream_tables AS st
                  WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }} AND st.is_populated)
       END AS last_refresh_at
{%- endmacro %}
