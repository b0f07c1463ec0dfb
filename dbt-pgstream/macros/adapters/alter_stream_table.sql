{#- SQL (one statement, not executed here) that alters the stream table `relation`, passing only
    the arguments given (none = keep the stored value). Does nothing if it does not exist.
    Args: relation (Relation); schedule (text; the string 'CALCULATED' goes back to a CALCULATED
    schedule where the engine can do that in place: pg_trickle); refresh_mode (text); status
    (text: 'ACTIVE' or 'SUSPENDED'; ACTIVE goes through the engine's resume function where it has
    one, pg_trickle's resume_stream_table(), for a SUSPENDED or ERROR table); query (text: a new defining query, changed in place:
    pg_trickle, whose alter keeps the storage table, its oid and rows unless a column's type
    changes incompatibly); options (dict of pg_trickle's options to change, key -> value, those
    alter_stream_table() takes: _options.sql). Named arguments only: pg_trickle's
    alter_stream_table has `query` as its second parameter. -#}
{% macro alter_stream_table(relation, schedule=none, refresh_mode=none, status=none, query=none, options=none) -%}
  {{ return(adapter.dispatch('alter_stream_table', 'dbt_pgstream')(
      relation, schedule, refresh_mode, status, query, options)) }}
{%- endmacro %}

{% macro default__alter_stream_table(relation, schedule, refresh_mode, status, query=none, options=none) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set args = [] -%}
  {%- if query is not none -%}
    {%- do args.append('query => ' ~ dbt_pgstream._pgstream_literal(
        dbt_pgstream._pgstream_query_text(query))) -%}
  {%- endif -%}
  {%- if schedule is not none -%}
    {%- if schedule == 'CALCULATED' -%}
      {%- do args.append('schedule => ' ~ dbt_pgstream._pgstream_schedule_arg(none, e)) -%}
    {%- else -%}
      {%- do args.append('schedule => ' ~ dbt_pgstream._pgstream_literal(schedule)) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if refresh_mode is not none -%}
    {%- do args.append('refresh_mode => ' ~ dbt_pgstream._pgstream_literal(refresh_mode)) -%}
  {%- endif -%}
  {%- set resume = status == 'ACTIVE' and e.resume_fn -%}
  {%- if status is not none and not resume -%}
    {%- do args.append('status => ' ~ dbt_pgstream._pgstream_literal(status)) -%}
  {%- endif -%}
  {%- set args = args + dbt_pgstream._pgstream_option_args(options, 'alter') -%}
  {%- set calls = [] -%}
  {%- set api_name = dbt_pgstream._pgstream_api_name(relation) -%}
  {%- if args -%}
    {%- do calls.append(e.schema ~ '.alter_stream_table(\n    name => ' ~ api_name ~ ',\n    '
        ~ args | join(',\n    ') ~ ')') -%}
  {%- endif -%}
  {%- if resume -%}
    {#- the resume function refuses a table that is neither SUSPENDED nor ERROR (e.g.
        INITIALIZING after initialize: false), which the alter takes to ACTIVE -#}
    {%- do calls.append("CASE WHEN st.status IN ('SUSPENDED', 'ERROR')\n"
        ~ "         THEN " ~ e.resume_fn ~ "(name => " ~ api_name ~ ")\n"
        ~ "         ELSE " ~ e.schema ~ ".alter_stream_table(name => " ~ api_name
        ~ ", status => 'ACTIVE') END") -%}
  {%- endif -%}
SELECT {{ calls | join(',\n    ') }},
    {{ dbt_pgstream._pgstream_mark_acted_sql() }}
FROM {{ e.stream_tables }} AS st
WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}
{%- endmacro %}
