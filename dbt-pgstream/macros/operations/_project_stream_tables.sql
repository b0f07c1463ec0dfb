{#- Private helpers of the monitoring run-operations (stream_table_status, wait_for_populated,
    refresh_all_stream_tables): the project's stream_table models joined to the engine's catalog
    in ONE query. The rows come back as one JSON text (fromjson), so agate never retypes a value
    (a schedule of '90' stays a string). -#}

{#- Private: the stream_table model nodes matching `select`: none = all of them; a string or a
    list of strings, each 'tag:<tag>', 'version:latest|old|prerelease|none', or a model name
    ('name': every version of a versioned model; 'name.v2' / 'name_v2': that version, as
    `dbt ls --select` lists them; an unknown name or a model that is not a stream_table is a
    compile error). Returns the nodes, without duplicates, in the order of the manifest's nodes (not a dependency order). -#}
{% macro _pgstream_select_nodes(select=none, caller_name='dbt_pgstream') %}
  {%- set all_nodes = dbt_pgstream._pgstream_stream_table_nodes() -%}
  {%- if select is none -%}
    {{ return(all_nodes) }}
  {%- endif -%}
  {%- if select is string -%}
    {%- set selectors = select.split() -%}
  {%- elif select is iterable and select is not mapping -%}
    {%- set selectors = select -%}
  {%- else -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: " ~ caller_name ~ ": select=" ~ select ~ " is not allowed; expected "
        ~ "'tag:<tag>', a model name, or a list of those") }}
  {%- endif -%}
  {%- set wanted = [] -%}
  {%- for selector in selectors -%}
    {%- if selector is not string or selector | trim | length == 0 -%}
      {{ exceptions.raise_compiler_error(
          "dbt_pgstream: " ~ caller_name ~ ": select item " ~ selector ~ " is not allowed; "
          ~ "expected 'tag:<tag>' or a model name") }}
    {%- endif -%}
    {%- set selector = selector | trim -%}
    {%- if selector.startswith('tag:') -%}
      {%- set tag = selector[4:] -%}
      {%- for node in all_nodes -%}
        {%- if tag in node.tags and node.unique_id not in wanted -%}
          {%- do wanted.append(node.unique_id) -%}
        {%- endif -%}
      {%- endfor -%}
    {%- elif selector.startswith('version:') -%}
      {%- set kind = selector[8:] -%}
      {%- if kind not in ['latest', 'old', 'prerelease', 'none'] -%}
        {{ exceptions.raise_compiler_error(
            "dbt_pgstream: " ~ caller_name ~ ": select item '" ~ selector ~ "' is not allowed; "
            ~ "expected version:latest, version:old, version:prerelease or version:none") }}
      {%- endif -%}
      {%- for node in all_nodes -%}
        {%- set versioned = node.get('version') is not none -%}
        {%- set latest = node.get('latest_version') -%}
        {%- set order = dbt_pgstream._pgstream_version_order(node.version, latest)
            if versioned and latest is not none else none -%}
        {%- if (kind == 'none' and not versioned)
              or (kind == 'latest' and dbt_pgstream._pgstream_is_latest_version(node))
              or (kind == 'old' and order == -1) or (kind == 'prerelease' and order == 1) -%}
          {%- if node.unique_id not in wanted -%}{%- do wanted.append(node.unique_id) -%}{%- endif -%}
        {%- endif -%}
      {%- endfor -%}
    {%- else -%}
      {#- as `dbt ls --select` does: a name selects every version of a versioned model;
          'name.v2' and 'name_v2' select that version -#}
      {%- set matched = [] -%}
      {%- for node in all_nodes -%}
        {%- set tag = dbt_pgstream._pgstream_version_tag(node) -%}
        {%- if selector == node.name or (tag is not none
              and selector in [node.name ~ '.' ~ tag, node.name ~ '_' ~ tag]) -%}
          {%- do matched.append(node.unique_id) -%}
        {%- endif -%}
      {%- endfor -%}
      {%- if not matched -%}
        {#- no stream_table model: the error names why (no such model / not a stream_table) -#}
        {%- do matched.append(dbt_pgstream._pgstream_model_node(selector).unique_id) -%}
      {%- endif -%}
      {%- for unique_id in matched if unique_id not in wanted -%}
        {%- do wanted.append(unique_id) -%}
      {%- endfor -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set nodes = [] -%}
  {%- for node in all_nodes -%}
    {%- if node.unique_id in wanted -%}
      {%- do nodes.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(nodes) }}
{% endmacro %}


{#- Private: for each node of `nodes`, a dict: model, relation ('schema.table'), schema, table,
    deployed (bool) and, when deployed, the pg_stat_stream_tables columns status, refresh_mode,
    schedule ('CALCULATED' for none), is_populated, consecutive_errors, stale,
    staleness_seconds, staleness (text), last_refresh_at (text), depth (longest chain of
    stream tables it reads from) and problem (why it cannot be refreshed until its model is
    run again, or none: _pgstream_sql_problem). Ordered upstream first (depth, then model name); models that
    are not deployed come last. One query. -#}
{% macro _pgstream_project_catalog(nodes) %}
  {%- if nodes | length == 0 -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set relations = [] -%}
  {%- for node in nodes -%}
    {%- do relations.append(dbt_pgstream._pgstream_node_relation(node)) -%}
  {%- endfor -%}
  {%- call statement('pgstream_project_catalog', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    WITH RECURSIVE wanted (ordinal, model, schema_name, table_name) AS (
        VALUES
        {%- for relation in relations %}
        ({{ loop.index0 }}, {{ lit(nodes[loop.index0].name) }}, {{ lit(relation.schema) }},
         {{ lit(relation.identifier) }}){{ ',' if not loop.last }}
        {%- endfor %}
    ),
    {{ dbt_pgstream._pgstream_depth_ctes() }},
    rows AS (
        SELECT wanted.ordinal, wanted.model,
               wanted.schema_name || '.' || wanted.table_name AS relation,
               wanted.schema_name AS schema, wanted.table_name AS "table",
               (s.{{ e.id }} IS NOT NULL) AS deployed,
               s.status, s.refresh_mode, COALESCE(s.schedule, 'CALCULATED') AS schedule,
               s.is_populated, s.consecutive_errors,
               (s.{{ e.id }} IS NOT NULL AND (NOT s.is_populated OR s.last_refresh_at IS NULL
                                          OR COALESCE(s.stale, false))) AS stale,
               round(extract(epoch FROM s.staleness)::numeric, 1)::float8 AS staleness_seconds,
               date_trunc('second', s.staleness)::text AS staleness,
               to_char(s.last_refresh_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS last_refresh_at,
               (SELECT max(depth.level) FROM depth WHERE depth.st_id = s.{{ e.id }}) AS depth,
               {{ dbt_pgstream._pgstream_sql_problem('st') }} AS problem
        FROM wanted
        LEFT JOIN {{ e.stat }} AS s
            ON s.{{ e.st_schema }} = wanted.schema_name AND s.{{ e.st_name }} = wanted.table_name
        LEFT JOIN {{ e.stream_tables }} AS st ON st.{{ e.id }} = s.{{ e.id }}
    )
    SELECT COALESCE(json_agg(row_to_json(rows) ORDER BY rows.deployed DESC, rows.depth,
                             rows.model, rows.ordinal), '[]')::text AS catalog
    FROM rows
  {%- endcall -%}
  {{ return(fromjson(load_result('pgstream_project_catalog').table.rows[0][0])) }}
{% endmacro %}


{#- Private: lines of a plain-text table: `columns` (header names) over `rows` (lists of
    values; none shows as '-'), each column as wide as its widest cell. -#}
{% macro _pgstream_text_table(columns, rows) %}
  {%- set cells = [] -%}
  {%- for row in rows -%}
    {%- set shown = [] -%}
    {%- for value in row -%}
      {%- do shown.append('-' if value is none else value | string) -%}
    {%- endfor -%}
    {%- do cells.append(shown) -%}
  {%- endfor -%}
  {%- set widths = [] -%}
  {%- for column in columns -%}
    {%- set index = loop.index0 -%}
    {%- set lengths = [column | length] -%}
    {%- for shown in cells -%}
      {%- do lengths.append(shown[index] | length) -%}
    {%- endfor -%}
    {%- do widths.append(lengths | max) -%}
  {%- endfor -%}
  {%- set header = [] -%}
  {%- set rule = [] -%}
  {%- for column in columns -%}
    {%- do header.append(column.ljust(widths[loop.index0])) -%}
    {%- do rule.append('-' * widths[loop.index0]) -%}
  {%- endfor -%}
  {%- set lines = [header | join('  ') | trim, rule | join('  ')] -%}
  {%- for shown in cells -%}
    {%- set padded = [] -%}
    {%- for text in shown -%}
      {%- do padded.append(text.ljust(widths[loop.index0])) -%}
    {%- endfor -%}
    {%- do lines.append(padded | join('  ') | trim) -%}
  {%- endfor -%}
  {{ return(lines) }}
{% endmacro %}


{#- Private: SQL (text or NULL) saying why the stream table of catalog row `alias` cannot be
    refreshed until its model is run again: its storage table was dropped, it reads a relation
    that was dropped (by oid: the relation is gone; also by the schema and name it had where
    the engine recorded them, pgstream-lite), or a column of a source that no longer exists.
    NULL for a healthy one (and for no row). The same predicates as the look-up's (which
    replaces such a table on the next `dbt run`) and the stream_table_healthy test. -#}
{% macro _pgstream_sql_problem(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  COALESCE(
      CASE WHEN {{ alias }}.{{ e.id }} IS NOT NULL
                AND {{ dbt_pgstream._pgstream_sql_storage_missing(alias) }}
           THEN 'its storage table was dropped' END,
      {%- if e.dependency_names %}
      (SELECT 'reads a relation that was dropped ('
              || pg_catalog.string_agg(COALESCE(named.source_schema || '.' || named.source_name
                                                || ', ', '') || 'oid ' || gone.source_relid,
                                       '; ') || ')'
       FROM ({{ dbt_pgstream._pgstream_sql_dropped_sources(alias) }}) AS gone
       LEFT JOIN pgstream_lite.dependency_names AS named
           ON named.{{ e.id }} = {{ alias }}.{{ e.id }} AND named.source_relid = gone.source_relid
       HAVING count(*) > 0),
      {%- else %}
      (SELECT 'reads a relation that was dropped (oid '
              || pg_catalog.string_agg(gone.source_relid::text, ', ') || ')'
       FROM ({{ dbt_pgstream._pgstream_sql_dropped_sources(alias) }}) AS gone
       HAVING count(*) > 0),
      {%- endif %}
      (SELECT 'reads ' || pg_catalog.string_agg(gone.col || ' of '
                                                || gone.source_relid::regclass::text, ', ')
              || ', which no longer exist(s)'
       FROM ({{ dbt_pgstream._pgstream_sql_dropped_columns(alias) }}) AS gone
       HAVING count(*) > 0))
{%- endmacro %}
