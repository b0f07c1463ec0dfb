{#- SQL for a source's `loaded_at_query` (dbt >= 1.10): the stream table's last_refresh_at from
    the engine's catalog, so `dbt source freshness` measures the age of the last refresh.
        sources:
          - name: marts
            config:
              freshness: {warn_after: {count: 10, period: minute}, error_after: {count: 1, period: hour}}
              loaded_at_query: "{{ dbt_pgstream.stream_table_loaded_at_query() }}"
            tables: [{name: order_totals}]
    `relation` defaults to `this` (the source table being checked). A stream table that was never
    refreshed gives NULL, which dbt reads as "infinitely old" (error/warn, never fresh); a
    relation that is not a stream table makes the query fail with
    `dbt_pgstream: stream table not found: schema.table`. -#}
{% macro stream_table_loaded_at_query(relation=none) -%}
  {{ return(adapter.dispatch('stream_table_loaded_at_query', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__stream_table_loaded_at_query(relation) -%}
  {%- set relation = relation if relation is not none else this -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {#- NULL until the first refresh. Not a stream table: SQL has no RAISE, so the query fails on a
      cast of the message to the column's type (made of a column, so that PostgreSQL does not
      fold it, and fail, when the branch is not taken; the engines disagree on get_staleness() of an
      unknown name: pgstream-lite raises, pg_stream and pg_trickle return NULL). -#}
SELECT CASE WHEN st.{{ e.id }} IS NULL
            THEN CAST({{ dbt_pgstream._pgstream_literal('dbt_pgstream: stream table not found: '
                      ~ relation.schema ~ '.' ~ relation.identifier) }}
                      || COALESCE(st.{{ e.st_name }}, '') AS timestamptz)
            WHEN st.is_populated THEN st.last_refresh_at
       END AS last_refresh_at
FROM (VALUES (1)) AS one (x)
LEFT JOIN {{ e.stream_tables }} AS st
    ON {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- endmacro %}
