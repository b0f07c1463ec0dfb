{#- dbt run-operation wait_for_populated --args '{"timeout_seconds": 60}'
    Blocks until every stream table of the project (or of `select`: 'tag:<tag>', a model name,
    or a list of those) is populated, e.g. in CI after models built with initialize: false,
    while something else fills them. A stream table created with initialize: false stays
    INITIALIZING until its first refresh, and the schedulers of pg_stream 0.1 and pg_trickle 0.67
    never run that one (they refresh ACTIVE stream tables only): a deploy step has to
    (run-operation refresh_all_stream_tables, or refresh_after_build). Re-checks the catalog every
    `poll_seconds` (SELECT pg_sleep between checks; no lock is held while it sleeps), for at most
    `timeout_seconds`; on timeout it fails naming the stream tables still empty (a model whose
    stream table does not exist counts as empty). -#}
{% macro wait_for_populated(timeout_seconds=60, poll_seconds=1, select=none) -%}
  {{ return(adapter.dispatch('wait_for_populated', 'dbt_pgstream')(
      timeout_seconds, poll_seconds, select)) }}
{%- endmacro %}

{% macro default__wait_for_populated(timeout_seconds, poll_seconds, select) -%}
  {%- if not execute -%}{{ return(true) }}{%- endif -%}
  {%- for key, value in [('timeout_seconds', timeout_seconds), ('poll_seconds', poll_seconds)] -%}
    {%- if value is not number or value is sameas true or value is sameas false or value < 0 -%}
      {{ exceptions.raise_compiler_error(
          'dbt_pgstream: wait_for_populated: ' ~ key ~ '=' ~ dbt_pgstream._pgstream_show(value)
          ~ ' is not allowed; expected a number of seconds >= 0') }}
    {%- endif -%}
  {%- endfor -%}
  {%- set nodes = dbt_pgstream._pgstream_select_nodes(select, 'wait_for_populated') -%}
  {%- set datetime = modules.datetime -%}
  {%- set started = datetime.datetime.now() -%}
  {%- set state = namespace(empty=[], done=false, initializing=[]) -%}
  {%- set poll = [poll_seconds, 0.1] | max -%}
  {#- At most one check per poll interval, plus the first and the last. -#}
  {%- for attempt in range(((timeout_seconds / poll) | round(0, 'ceil') | int) + 2) -%}
    {%- set rows = dbt_pgstream._pgstream_project_catalog(nodes) -%}
    {%- do adapter.commit() -%}
    {%- set empty = [] -%}
    {%- set initializing = [] -%}
    {%- for row in rows -%}
      {%- if not row.deployed -%}
        {%- do empty.append(row.model ~ ' (' ~ row.relation ~ ', not deployed)') -%}
      {%- elif not row.is_populated -%}
        {%- do empty.append(row.model ~ ' (' ~ row.relation ~ ', ' ~ row.status ~ ')') -%}
        {%- if row.status == 'INITIALIZING' -%}
          {%- do initializing.append(row.model) -%}
        {%- endif -%}
      {%- endif -%}
    {%- endfor -%}
    {%- set state.empty = empty -%}
    {%- set state.initializing = initializing -%}
    {%- if empty | length == 0 -%}
      {%- set state.done = true -%}
      {%- break -%}
    {%- endif -%}
    {%- set remaining = timeout_seconds - (datetime.datetime.now() - started).total_seconds() -%}
    {%- if remaining <= 0 -%}
      {%- break -%}
    {%- endif -%}
    {%- if attempt == 0 -%}
      {{ log('dbt_pgstream: waiting up to ' ~ timeout_seconds ~ 's for ' ~ empty | length
             ~ ' stream table(s) to be populated: ' ~ empty | join(', '), info=True) }}
    {%- endif -%}
    {%- call statement('pgstream_wait_sleep', auto_begin=True) -%}
      SELECT pg_catalog.pg_sleep({{ [poll, remaining] | min }})
    {%- endcall -%}
    {%- do adapter.commit() -%}
  {%- endfor -%}
  {%- set waited = (datetime.datetime.now() - started).total_seconds() | round(1) -%}
  {%- if not state.done -%}
    {{ exceptions.raise_compiler_error(
        'dbt_pgstream: wait_for_populated: timed out after ' ~ timeout_seconds ~ 's; '
        ~ state.empty | length ~ ' stream table(s) still not populated: '
        ~ state.empty | join(', ')
        ~ ('. An INITIALIZING stream table (initialize: false) is filled by its first refresh, '
           ~ 'which the schedulers of pg_stream 0.1 and pg_trickle 0.67 never run: '
           ~ dbt_pgstream._pgstream_refresh_command(state.initializing)
           if state.initializing else '')) }}
  {%- endif -%}
  {{ log('dbt_pgstream: all ' ~ nodes | length ~ ' stream table(s) populated (waited '
         ~ waited ~ 's)', info=True) }}
  {{ return(true) }}
{%- endmacro %}


{#- Private: the shell command refreshing the stream tables of `models` (model names), as pasted
    into a POSIX shell: dbt run-operation refresh_all_stream_tables --args '{"select": [...]}' -#}
{% macro _pgstream_refresh_command(models) -%}
  {%- set args = tojson({'select': models}) -%}
  {{- "dbt run-operation refresh_all_stream_tables --args '" ~ args.replace("'", "'\\''") ~ "'" -}}
{%- endmacro %}
