{#- dbt run-operation stream_table_status [--args '{"select": "tag:nightly"}']
    Prints one table of the project's stream tables (every stream_table model, or those of
    `select`: 'tag:<tag>', a model name, or a list of those): model, stream table, status,
    refresh mode, schedule, populated, staleness, last refresh, consecutive errors, and a problem:
    `BROKEN: <why> (dbt run --select <model>+)` for one that cannot be refreshed until its model
    runs again (its storage table, or a relation or column it reads, was dropped). A model whose
    stream table does not exist shows status 'NOT DEPLOYED'. Read-only; never fails on what it
    finds. Returns the rows (dicts, see _pgstream_project_catalog) to a calling macro. -#}
{% macro stream_table_status(select=none) -%}
  {{ return(adapter.dispatch('stream_table_status', 'dbt_pgstream')(select)) }}
{%- endmacro %}

{% macro default__stream_table_status(select) -%}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {%- set nodes = dbt_pgstream._pgstream_select_nodes(select, 'stream_table_status') -%}
  {%- if nodes | length == 0 -%}
    {{ log('dbt_pgstream: no stream_table models in this project'
           ~ ('' if select is none else ' match select=' ~ select), info=True) }}
    {{ return([]) }}
  {%- endif -%}
  {%- set rows = dbt_pgstream._pgstream_project_catalog(nodes) -%}
  {%- do adapter.commit() -%}
  {%- set table_rows = [] -%}
  {%- for row in rows -%}
    {%- if row.deployed -%}
      {%- do table_rows.append([row.model, row.relation, row.status, row.refresh_mode,
          row.schedule, 'yes' if row.is_populated else 'NO',
          (row.staleness ~ (' (STALE)' if row.stale else '')) if row.staleness is not none
              else ('never refreshed' if row.stale else none),
          row.last_refresh_at if row.last_refresh_at is not none else 'never',
          row.consecutive_errors,
          ('BROKEN: ' ~ row.problem ~ ' (dbt run --select ' ~ row.model ~ '+)')
              if row.problem else none]) -%}
    {%- else -%}
      {%- do table_rows.append([row.model, row.relation, 'NOT DEPLOYED', none, none, none,
                                none, none, none, none]) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set lines = dbt_pgstream._pgstream_text_table(
      ['model', 'stream table', 'status', 'mode', 'schedule', 'populated', 'staleness',
       'last refresh', 'errors', 'problem'], table_rows) -%}
  {{ log('dbt_pgstream: ' ~ rows | length ~ ' stream table(s)\n' ~ lines | join('\n'), info=True) }}
  {{ return(rows) }}
{%- endmacro %}
