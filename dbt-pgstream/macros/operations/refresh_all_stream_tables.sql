{#- dbt run-operation refresh_all_stream_tables [--args '{"select": "tag:nightly"}']
    Refreshes the project's stream tables now (synchronously, each in its stored refresh mode and
    in a transaction of its own), upstream first: a stream table is refreshed after every stream
    table it reads from. `select`: none = every stream_table model; 'tag:<tag>', a model name, or
    a list of those. Before refreshing anything it fails, naming them, when a selected model has
    no stream table (not deployed) or its stream table is SUSPENDED. -#}
{% macro refresh_all_stream_tables(select=none) -%}
  {{ return(adapter.dispatch('refresh_all_stream_tables', 'dbt_pgstream')(select)) }}
{%- endmacro %}

{% macro default__refresh_all_stream_tables(select) -%}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {%- set nodes = dbt_pgstream._pgstream_select_nodes(select, 'refresh_all_stream_tables') -%}
  {%- if nodes | length == 0 -%}
    {{ log('dbt_pgstream: no stream_table models'
           ~ ('' if select is none else ' match select=' ~ select) ~ ': nothing to refresh',
           info=True) }}
    {{ return([]) }}
  {%- endif -%}
  {%- set rows = dbt_pgstream._pgstream_project_catalog(nodes) -%}
  {%- do adapter.commit() -%}
  {%- set missing = [] -%}
  {%- set suspended = [] -%}
  {%- for row in rows -%}
    {%- if not row.deployed -%}
      {%- do missing.append(row.model ~ ' (' ~ row.relation ~ ')') -%}
    {%- elif row.status == 'SUSPENDED' -%}
      {%- do suspended.append(row) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if missing | length > 0 -%}
    {{ exceptions.raise_compiler_error(
        'dbt_pgstream: refresh_all_stream_tables: no stream table for model(s) '
        ~ missing | join(', ') ~ ': run `dbt run` first. Nothing was refreshed.') }}
  {%- endif -%}
  {%- if suspended | length > 0 -%}
    {#- the hint is SQL that runs as pasted: the real names, as literals, in the engine's API -#}
    {%- set names = [] -%}
    {%- set hints = [] -%}
    {%- for row in suspended -%}
      {%- do names.append(row.model ~ ' (' ~ row.relation ~ ')') -%}
      {%- do hints.append(dbt_pgstream._pgstream_resume_hint(dbt_pgstream._pgstream_api_name(
          api.Relation.create(schema=row.schema, identifier=row.table, type='table'))) ~ ';') -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(
        'dbt_pgstream: refresh_all_stream_tables: stream table(s) SUSPENDED: '
        ~ names | join(', ') ~ '; resume them (config status: ACTIVE, or run: '
        ~ hints | join(' ') ~ '). Nothing was refreshed.') }}
  {%- endif -%}
  {%- set refreshed = [] -%}
  {%- for row in rows -%}
    {%- set relation = api.Relation.create(schema=row.schema, identifier=row.table,
                                           type='table') -%}
    {%- call statement('pgstream_refresh_all', auto_begin=True) -%}
      {{ dbt_pgstream.refresh_stream_table(relation) }}
    {%- endcall -%}
    {%- do adapter.commit() -%}
    {%- do refreshed.append(row.model) -%}
    {{ log('dbt_pgstream: ' ~ row.model ~ ' (' ~ row.relation ~ '): refreshed', info=True) }}
  {%- endfor -%}
  {{ log('dbt_pgstream: refreshed ' ~ refreshed | length ~ ' stream table(s)', info=True) }}
  {{ return(refreshed) }}
{%- endmacro %}
