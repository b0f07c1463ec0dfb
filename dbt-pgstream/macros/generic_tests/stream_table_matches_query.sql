{#- The implementation of the generic test stream_table_matches_query (tests/generic/stream_table_matches_query.sql), dispatched:
    override it as default__test_stream_table_matches_query in your project. -#}
{% macro default__test_stream_table_matches_query(model) %}
{%- set model = dbt_pgstream._pgstream_tested_relation(model) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set definition = none -%}
  {%- if execute -%}
    {%- set e = dbt_pgstream._pgstream_engine() -%}
    {%- set found = run_query(
        "SELECT row_to_json(d)::text FROM (SELECT st.defining_query AS query,"
        ~ " (SELECT json_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a"
        ~ "   WHERE a.attrelid = st." ~ e.relid ~ " AND a.attnum > 0 AND NOT a.attisdropped"
        ~ "     AND pg_catalog.left(a.attname::text, " ~ e.internal_prefix | length ~ ") <> "
        ~ lit(e.internal_prefix) ~ ") AS columns"
        ~ " FROM " ~ e.stream_tables ~ " AS st WHERE "
        ~ dbt_pgstream._pgstream_catalog_match(model) ~ ") AS d") -%}
    {%- if found.rows | length == 1 -%}
      {%- set definition = fromjson(found.rows[0][0]) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if definition is none or not definition.columns -%}
SELECT {{ lit('not a stream table' if execute else 'not compiled') }}::text AS diff,
       NULL::bigint AS missing_rows, NULL::bigint AS extra_rows,
       {{ lit(model.schema ~ '.' ~ model.identifier) }}::text AS row_data
  {%- else -%}
    {%- set quoted = [] -%}
    {%- for column in definition.columns -%}
      {%- do quoted.append(adapter.quote(column)) -%}
    {%- endfor -%}
    {%- set columns = quoted | join(', ') %}
WITH stored AS (
    SELECT {{ columns }} FROM {{ model }}
),
fresh AS (
    SELECT {{ columns }} FROM (
{{ dbt_pgstream._pgstream_query_text(definition.query) }}
    ) AS pgs_defining_query
),
extra AS (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh),
missing AS (SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored),
diffs AS (
    SELECT 'missing'::text AS diff, row_to_json(missing)::text AS row_data FROM missing
    UNION ALL
    SELECT 'extra'::text, row_to_json(extra)::text FROM extra
)
SELECT diffs.diff,
       (SELECT count(*) FROM missing) AS missing_rows,
       (SELECT count(*) FROM extra) AS extra_rows,
       diffs.row_data
FROM diffs
  {%- endif %}
{% endmacro %}
