{#- SQL (a DO check, then one SELECT; not executed here) that refreshes the stream table
    `relation` now, in its stored refresh mode. A SUSPENDED one fails with a runnable hint. The engine raises `stream table not found:` if it does not exist.
    On pg_stream the SELECT first waits for a refresh of the table by the engine's own scheduler
    to finish (_pgstream_refresh_wait_sql): its manual refresh does not wait, it fails with
    `refresh skipped: ... another refresh is already in progress` (seen in CI, a run-operation
    refresh meeting a scheduled one).
    Args: relation (Relation). -#}
{% macro refresh_stream_table(relation) -%}
  {{ return(adapter.dispatch('refresh_stream_table', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__refresh_stream_table(relation) -%}
{{ dbt_pgstream._pgstream_assert_not_suspended_sql(relation) }};
{%- set wait = dbt_pgstream._pgstream_refresh_wait_sql(relation) %}
SELECT {{ dbt_pgstream._pgstream_fn('refresh_stream_table') }}(name => {{ dbt_pgstream._pgstream_api_name(relation) }})
{%- if wait %} FROM ({{ wait }}) AS dbt_pgstream_wait{% endif %}
{%- endmacro %}


{#- Private: a one-row SELECT (or '') that waits until no other session refreshes the stream
    table `relation`, then holds, until the transaction ends, the lock the engine's refresh
    takes; the engine's refresh called in the same statement then finds it held by its own
    session, which does not conflict. pg_stream 0.1: its refreshes, manual and scheduled, take
    pg_try_advisory_lock(pgs_id) (engine source); an advisory lock needs no privilege.
    pg_trickle 0.67: '' (its scheduler holds the catalog row FOR UPDATE, and waiting for that
    needs UPDATE on its catalog, which a role allowed to refresh may not have). pgstream-lite: ''.
    Args: relation (Relation). Returns SQL text. -#}
{% macro _pgstream_refresh_wait_sql(relation) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.engine == 'pg_stream' -%}
SELECT pg_catalog.count(*) AS dbt_pgstream_waited FROM (
  SELECT pg_catalog.pg_advisory_xact_lock(st.{{ e.id }}) FROM {{ e.stream_tables }} AS st
  WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}) AS locked
  {%- endif -%}
{%- endmacro %}


{#- Private: a DO statement failing with a runnable hint when the stream table is SUSPENDED, so
    that every refresh the package sends (refresh, refresh_all_stream_tables, refresh_on_run,
    refresh_after_build) says how to resume it in the engine's own API: pg_stream 0.1's own error
    points to pgstream.resume_stream_table(), which does not exist in that version. -#}
{% macro _pgstream_assert_not_suspended_sql(relation) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set name = relation.schema ~ '.' ~ relation.identifier -%}
  {%- set message = 'dbt_pgstream: stream table ' ~ name ~ ' is SUSPENDED, so it cannot be '
      ~ 'refreshed; resume it first (config status: ACTIVE and dbt run, or run: '
      ~ dbt_pgstream._pgstream_resume_hint(dbt_pgstream._pgstream_api_name(relation), e)
      ~ ';)' -%}
  {%- set body -%}
BEGIN
  IF EXISTS (SELECT 1 FROM {{ e.stream_tables }} AS st
             WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
               AND st.status = 'SUSPENDED') THEN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state', MESSAGE = {{ lit(message) }};
  END IF;
END
  {%- endset -%}
DO {{ lit(body) }}
{%- endmacro %}
