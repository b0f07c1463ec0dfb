{#- dbt run-operation refresh_all_stream_tables [--args '{"select": "tag:nightly"}']
    Refreshes the project's stream tables now (synchronously, each in its stored refresh mode and
    in a transaction of its own), upstream first: a stream table is refreshed after every stream
    table it reads from.
    Args: select (none = every stream_table model; 'tag:<tag>', a model name, or a list of
    those); skip_broken (bool, default false).
    Every selected stream table is checked before any is refreshed: one that is not deployed,
    SUSPENDED, or broken (its storage table or a relation or column it reads was dropped: it
    cannot be refreshed until its model runs again) stops the operation with one error listing
    them all, why, and what to run; nothing is refreshed. With skip_broken: true the others are
    refreshed and a warning lists those left out. Returns the refreshed model names. -#}
{% macro refresh_all_stream_tables(select=none, skip_broken=false) -%}
  {{ return(adapter.dispatch('refresh_all_stream_tables', 'dbt_pgstream')(select, skip_broken)) }}
{%- endmacro %}

{% macro default__refresh_all_stream_tables(select, skip_broken=false) -%}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {%- if skip_broken is not sameas true and skip_broken is not sameas false -%}
    {{ exceptions.raise_compiler_error('dbt_pgstream: refresh_all_stream_tables: skip_broken='
        ~ dbt_pgstream._pgstream_show(skip_broken) ~ ' is not allowed; expected true or false') }}
  {%- endif -%}
  {%- set nodes = dbt_pgstream._pgstream_select_nodes(select, 'refresh_all_stream_tables') -%}
  {%- if nodes | length == 0 -%}
    {{ log('dbt_pgstream: no stream_table models'
           ~ ('' if select is none else ' match select=' ~ select) ~ ': nothing to refresh',
           info=True) }}
    {{ return([]) }}
  {%- endif -%}
  {%- set rows = dbt_pgstream._pgstream_project_catalog(nodes) -%}
  {%- do adapter.commit() -%}
  {#- why each one that cannot be refreshed cannot, and what to run -#}
  {%- set blocked = [] -%}
  {%- set rebuild = [] -%}
  {%- set resume = [] -%}
  {%- for row in rows -%}
    {%- set relation = api.Relation.create(schema=row.schema, identifier=row.table,
                                           type='table') -%}
    {%- if not row.deployed -%}
      {%- do blocked.append([row, 'not deployed']) -%}
      {%- do rebuild.append(row.model) -%}
    {%- elif row.problem -%}
      {%- do blocked.append([row, row.problem]) -%}
      {%- do rebuild.append(row.model) -%}
    {%- elif row.status == 'SUSPENDED' -%}
      {%- do blocked.append([row, 'SUSPENDED']) -%}
      {#- the hint is SQL that runs as pasted: the real names, as literals, in the engine's API -#}
      {%- do resume.append(dbt_pgstream._pgstream_resume_hint(
          dbt_pgstream._pgstream_api_name(relation)) ~ ';') -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set listed = [] -%}
  {%- for row, why in blocked -%}
    {%- do listed.append(row.model ~ ' (' ~ row.relation ~ '): ' ~ why) -%}
  {%- endfor -%}
  {%- set todo = [] -%}
  {%- if rebuild -%}
    {%- do todo.append('deploy them: dbt run --select ' ~ rebuild | join('+ ') ~ '+') -%}
  {%- endif -%}
  {%- if resume -%}
    {%- do todo.append('resume them (config status: ACTIVE, or run: ' ~ resume | join(' ')
        ~ ')') -%}
  {%- endif -%}
  {%- if blocked and not skip_broken -%}
    {{ exceptions.raise_compiler_error(
        'dbt_pgstream: refresh_all_stream_tables: ' ~ blocked | length
        ~ ' stream table(s) cannot be refreshed: ' ~ listed | join('; ') ~ '. '
        ~ todo | join('; ') ~ '. Nothing was refreshed (skip_broken: true refreshes the '
        ~ 'others).') }}
  {%- endif -%}
  {%- set skipped = blocked | map(attribute=0) | map(attribute='model') | list -%}
  {%- set refreshed = [] -%}
  {%- for row in rows if row.model not in skipped -%}
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
  {%- if blocked -%}
    {%- do exceptions.warn('dbt_pgstream: refresh_all_stream_tables: left out ' ~ blocked | length
        ~ ' stream table(s) that cannot be refreshed: ' ~ listed | join('; ') ~ '. '
        ~ todo | join('; ') ~ '.') -%}
  {%- endif -%}
  {{ return(refreshed) }}
{%- endmacro %}
