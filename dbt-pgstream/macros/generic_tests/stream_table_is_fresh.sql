{#- The implementation of the generic test stream_table_is_fresh (tests/generic/stream_table_is_fresh.sql), dispatched:
    override it as default__test_stream_table_is_fresh in your project. -#}
{% macro default__test_stream_table_is_fresh(model, max_staleness=none) %}
  {%- set model = dbt_pgstream._pgstream_tested_relation(model) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {#- checked when the test runs (at parse time `model` is not the tested relation yet) -#}
  {%- if execute and max_staleness is not none -%}
    {%- set valid = dbt_pgstream._pgstream_is_duration(max_staleness)
                 and not (max_staleness is number and max_staleness == 0) -%}
    {%- if not valid -%}
      {{ exceptions.raise_compiler_error(
          "dbt_pgstream: invalid argument of test stream_table_is_fresh on '"
          ~ model.identifier ~ "': max_staleness=" ~ dbt_pgstream._pgstream_show(max_staleness)
          ~ " is not allowed; expected a duration such as '30s', '10m', '1h30m', '2d', '1w' "
          ~ "or a whole number of seconds") }}
    {%- endif -%}
  {%- endif -%}
WITH st AS (
    SELECT i.*,
           {{ e.schema }}.parse_duration_seconds(
               {{ lit(max_staleness | string | trim) if max_staleness is not none else 'i.schedule' }}
           ) AS max_seconds,
           {{ lit(max_staleness | string | trim) if max_staleness is not none
              else "COALESCE(i.schedule, 'CALCULATED')" }} AS max_text
    FROM {{ e.info }} AS i
    WHERE {{ dbt_pgstream._pgstream_catalog_match(model, 'i') }}
)
SELECT {{ lit(model.schema ~ '.' ~ model.identifier) }} AS stream_table, problem
FROM (
    SELECT 'not a stream table' AS problem
    WHERE NOT EXISTS (SELECT 1 FROM st)
    UNION ALL
    SELECT CASE
        WHEN NOT st.is_populated OR st.data_timestamp IS NULL
            THEN 'never refreshed (not populated)'
        WHEN st.max_seconds IS NULL
            THEN 'schedule ' || st.max_text || ' is not a duration: pass max_staleness'
        WHEN extract(epoch FROM st.staleness) > st.max_seconds
            THEN 'stale: last refreshed ' || date_trunc('second', st.staleness)::text
                 || ' ago, more than ' || st.max_text
    END
    FROM st
) AS problems
WHERE problem IS NOT NULL
{% endmacro %}
