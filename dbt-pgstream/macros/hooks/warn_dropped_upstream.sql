{#- The package's on-run-end hook (declared in the package's dbt_project.yml, so it runs at the end
    of every `dbt run`, `seed`, `build`, `test` and `snapshot` of a project that installs the
    package):

        on-run-end: "{{ dbt_pgstream.warn_dropped_upstream(results) }}"

    When this invocation dropped and rebuilt a relation that a stream_table model of the project
    reads, directly or through other nodes (a `seed` or `incremental` under --full-refresh or
    `full_refresh: true`, a `table`, `view`, `materialized_view` or other non-stream_table model:
    dbt rebuilds those by a drop ... CASCADE and a create), it warns once, naming every stream
    table that now cannot be refreshed until its model runs again (it reads a relation that was
    dropped, its storage table or a column it reads is gone: the stream_table_status `problem`)
    and the command that rebuilds them (`dbt run --select <model>+ ...`). pg_trickle and pg_stream
    mark such stream tables ERROR at the drop, pgstream-lite too where its event trigger is
    installed; none of them refreshes them again until they are re-created.

    Cost: nothing (no query) when the run rebuilt no such relation, or when every stream_table
    model downstream of one was deployed again later in the same run; else the engine detection
    (once per invocation, shared with the models) and ONE catalog query.

    Args: results (list of dbt's RunResult: the on-run-end context's `results`).
    Returns '' (no SQL for dbt to run): the run's status and exit code never change, except that
    `--warn-error` turns the warning into an error, as for dbt's own warnings. -#}
{% macro warn_dropped_upstream(results) -%}
  {{ return(adapter.dispatch('warn_dropped_upstream', 'dbt_pgstream')(results)) }}
{%- endmacro %}

{% macro default__warn_dropped_upstream(results) -%}
  {%- if not execute or results is none -%}{{ return('') }}{%- endif -%}
  {%- set full_refresh_flag = flags.FULL_REFRESH is sameas true -%}
  {#- the relations this run dropped and created again, and the stream_table models it deployed -#}
  {%- set rebuilt = {} -%}
  {%- set deployed = [] -%}
  {%- for result in results if result.node is defined and result.node.resource_type in
        ['model', 'seed'] and result.status | string == 'success' -%}
    {%- set node = result.node -%}
    {%- set materialized = node.config.materialized -%}
    {%- if materialized == 'stream_table' -%}
      {%- do deployed.append(node.unique_id) -%}
    {%- elif materialized != 'ephemeral' -%}
      {%- set full_refresh = node.config.full_refresh is sameas true
          or (full_refresh_flag and node.config.full_refresh is not sameas false) -%}
      {%- if materialized not in ['seed', 'incremental'] or full_refresh -%}
        {%- do rebuilt.update({node.unique_id: node.name ~ ' (' ~ materialized ~ ')'}) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not rebuilt -%}{{ return('') }}{%- endif -%}
  {#- the stream_table models downstream of a rebuilt relation (a drop ... CASCADE also drops the
      views over it), found by walking the graph down from the rebuilt nodes -#}
  {%- set below = dict(rebuilt) -%}
  {%- set state = {'grew': true} -%}
  {%- for pass in range(graph.nodes | length) if state.grew -%}
    {%- do state.update({'grew': false}) -%}
    {%- for node in graph.nodes.values() if node.unique_id not in below
          and node.resource_type in ['model', 'seed', 'snapshot'] -%}
      {%- for parent in node.depends_on.nodes if node.unique_id not in below and parent in below -%}
        {%- do below.update({node.unique_id: node.name}) -%}
        {%- do state.update({'grew': true}) -%}
      {%- endfor -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- set readers = [] -%}
  {%- for node in dbt_pgstream._pgstream_stream_table_nodes() if node.unique_id in below -%}
    {%- do readers.append(node) -%}
  {%- endfor -%}
  {%- set left = readers | rejectattr('unique_id', 'in', deployed) | list -%}
  {%- if not left -%}{{ return('') }}{%- endif -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.engine is none -%}{{ return('') }}{%- endif -%}
  {%- set broken = dbt_pgstream._pgstream_broken_stream_tables() -%}
  {%- if not broken -%}{{ return('') }}{%- endif -%}
  {%- set by_relation = {} -%}
  {%- for node in dbt_pgstream._pgstream_stream_table_nodes() -%}
    {%- set relation = dbt_pgstream._pgstream_node_relation(node) -%}
    {%- do by_relation.update({relation.schema ~ '.' ~ relation.identifier: node}) -%}
  {%- endfor -%}
  {#- those this run broke (downstream of what it rebuilt), and any broken before it -#}
  {%- set now = [] -%}
  {%- set before = [] -%}
  {%- set models = [] -%}
  {%- set others = [] -%}
  {%- for row in broken -%}
    {%- set node = by_relation.get(row.schema ~ '.' ~ row.name) -%}
    {%- if node is none -%}
      {%- do before.append(row.schema ~ '.' ~ row.name ~ ' (no model of this project)') -%}
      {%- do others.append(row.schema ~ '.' ~ row.name) -%}
    {%- else -%}
      {%- do (now if node.unique_id in below else before).append(
          node.name ~ ' (' ~ row.schema ~ '.' ~ row.name ~ ')') -%}
      {%- do models.append(node.name ~ '+') -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not now -%}{{ return('') }}{%- endif -%}
  {%- set todo = ['dbt run --select ' ~ models | join(' ')] -%}
  {%- if others -%}
    {%- do todo.append('re-create ' ~ others | join(', ') ~ ' with the engine\'s API') -%}
  {%- endif -%}
  {%- do exceptions.warn('dbt_pgstream: this run dropped and rebuilt '
      ~ rebuilt.values() | sort | join(', ') ~ '; ' ~ now | length ~ ' stream table(s) over it now '
      ~ 'read a dropped relation and cannot be refreshed until they are rebuilt: '
      ~ now | join(', ') ~ '.' ~ (' Also broken before this run: ' ~ before | join(', ') ~ '.'
      if before else '') ~ ' Rebuild them: ' ~ todo | join('; ') ~ '.') -%}
  {{ return('') }}
{%- endmacro %}


{#- Private: the stream tables of the database that cannot be refreshed until re-created (the
    stream_table_status `problem`: a relation or column they read, or their storage table, was
    dropped), as [{schema, name, problem}], upstream first. One query. -#}
{% macro _pgstream_broken_stream_tables() %}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_broken', fetch_result=True, auto_begin=True) -%}
    WITH RECURSIVE {{ dbt_pgstream._pgstream_depth_ctes() }},
    rows AS (
        SELECT st.{{ e.st_schema }} AS schema, st.{{ e.st_name }} AS name,
               {{ dbt_pgstream._pgstream_sql_problem('st') }} AS problem,
               (SELECT max(depth.level) FROM depth WHERE depth.st_id = st.{{ e.id }}) AS depth
        FROM {{ e.stream_tables }} AS st
    )
    SELECT COALESCE(json_agg(row_to_json(rows) ORDER BY rows.depth, rows.schema, rows.name),
                    '[]')::text AS dbt_pgstream_broken_stream_tables
    FROM rows WHERE rows.problem IS NOT NULL
  {%- endcall -%}
  {%- set found = fromjson(load_result('pgstream_broken').table.rows[0][0]) -%}
  {%- do adapter.commit() -%}
  {{ return(found) }}
{% endmacro %}
