{#- Private: SQL (one statement, or '' where not needed) that makes the engine's scheduler keep
    away from the stream table `relation` and every stream table reading it, directly or through
    others, until the transaction ends: it waits for a refresh of any of them in progress, then
    holds the lock the engine's own scheduler takes before it refreshes one (so it skips them).
    Taken before a drop, so a scheduled refresh never holds a lock the drop needs while it waits
    for one the drop holds (a deadlock, one of the two then fails; seen in CI on pg_trickle when
    a replace ran while its scheduler refreshed). Locks are taken upstream first (then by id),
    the order in which a scheduler refreshes them: what is held while waiting is never what a
    refresh in progress goes on to need.
    Measured lock protocols (engines' sources): pg_trickle 0.67's scheduler locks the stream
    table's catalog row FOR UPDATE SKIP LOCKED for the refresh; pg_stream 0.1's takes
    pg_try_advisory_lock(pgs_id). pgstream-lite's drop_stream_table takes its refresh lock
    itself (nothing here).
    Args: relation (Relation). Returns SQL text. -#}
{% macro _pgstream_refresh_exclusion_sql(relation) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.engine in ['pg_trickle', 'pg_stream'] -%}
    {%- set closure -%}
      WITH RECURSIVE readers (id, relid, depth) AS (
        SELECT st.{{ e.id }}, st.{{ e.relid }}, 0 FROM {{ e.stream_tables }} AS st
        WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
        UNION
        SELECT down.{{ e.id }}, down.{{ e.relid }}, r.depth + 1
        FROM readers AS r
        JOIN {{ e.dependencies }} AS dep ON dep.source_relid = r.relid
        JOIN {{ e.stream_tables }} AS down ON down.{{ e.id }} = dep.{{ e.id }}
        WHERE r.depth < 64)
      SELECT r.id, pg_catalog.max(r.depth) AS depth FROM readers AS r GROUP BY r.id
    {%- endset -%}
    {%- if e.engine == 'pg_trickle' -%}
SELECT pg_catalog.count(*) AS dbt_pgstream_excluded FROM (
  SELECT 1 FROM {{ e.stream_tables }} AS x
  JOIN ({{ closure }}) AS c ON c.id = x.{{ e.id }}
  ORDER BY c.depth, x.{{ e.id }} FOR UPDATE OF x) AS locked
    {%- else -%}
SELECT pg_catalog.count(*) AS dbt_pgstream_excluded FROM (
  SELECT pg_catalog.pg_advisory_xact_lock(ids.id)
  FROM (SELECT c.id FROM ({{ closure }}) AS c ORDER BY c.depth, c.id) AS ids) AS locked
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}
