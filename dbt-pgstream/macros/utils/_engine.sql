{#- Private: the engine behind the target database and every engine-specific name the package
    uses. The ONLY place that knows how pg_stream (and pgstream-lite, which implements its API)
    and pg_trickle (the same extension after its rename) spell things; every other macro reads
    the names from the dict returned here.

    _pgstream_engine() -> dict:
      engine      'pg_trickle', 'pg_stream' or 'pgstream-lite' (schema pgstream without the
                  extension), or none when no engine is installed (the names are then
                  pg_stream's, so the install check reports it)
      version     the extension's version (text), or none for pgstream-lite
      api         'pg_stream' or 'pg_trickle': which SQL API the names below belong to
      schema, prefix ('pgs' / 'pgt'), catalog relations (stream_tables, dependencies,
      refresh_history, stat, info), catalog columns (id, relid, st_name, st_schema), storage
      columns (row_id, count, internal_prefix), and what the API can do in place
      (alter_sets_calculated: alter_stream_table can go back to a CALCULATED schedule;
      resume_fn: the function that takes a SUSPENDED stream table back to ACTIVE, or none where
      alter_stream_table(status => 'ACTIVE') does it), and
      pg_stream_01: the engine is the pg_stream 0.1 extension, whose defects the package works
      around or refuses up front (_engine_limits.sql); serialize_creates: creates over one
      source race on its change buffer (measured on pg_stream 0.1 and pg_trickle 0.67), so the
      package serialises creates on these engines; repair_after_source_recreated: dropping the
      last stream table over a dropped-and-recreated source also drops the change-capture
      triggers of the new source (measured on pg_trickle 0.67), so a replace for a dropped
      source ends with the engine's repair_stream_table(), which rebuilds them;
      quotes_names: the engine quotes the schema and table names it is given (false on
      pg_stream 0.1 and pg_trickle 0.67: both cast an unquoted `schema || '.' || name` to
      regclass, so a name that needs quoting is refused up front, _engine_limits.sql);
      drop_needs_cascade: drop_stream_table() refuses a stream table other stream tables read
      unless it is called with cascade => true, which drops them too (pg_trickle);
      options, refresh_modes, alter_query, requested_refresh_mode, extensions: see below;
      unique_row_id_for_counted: over a source without a primary key (every dbt seed) the engine
      gives an aggregate or DISTINCT stream table only a non-unique index on its row id, and its
      DIFFERENTIAL refresh then fails (`there is no unique or exclusion constraint matching the
      ON CONFLICT specification`: pg_trickle 0.67), so the package adds the unique index.

    Read once per dbt invocation (one query, kept in the run's `graph` dict: every node of a run
    shares it), so a model's deploy still costs one catalog round trip. Project var
    `dbt_pgstream_engine` ('pg_stream' or 'pg_trickle') picks the API when a database has both. -#}
{% macro _pgstream_engine() %}
  {%- set cache_key = '__dbt_pgstream_engine__' -%}
  {%- if execute and graph is mapping and graph.get(cache_key) is mapping -%}
    {{ return(graph[cache_key]) }}
  {%- endif -%}
  {%- set found = {'pgtrickle': false, 'pgstream': false, 'extension': none, 'version': none} -%}
  {%- if execute -%}
    {%- set detect -%}
      SELECT
        EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgtrickle') AS pgtrickle,
        EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgstream') AS pgstream,
        (SELECT pg_catalog.string_agg(e.extname || ' ' || e.extversion, ',' ORDER BY e.extname)
         FROM pg_catalog.pg_extension AS e
         WHERE e.extname IN ('pg_stream', 'pg_trickle', 'citus', 'pg_mooncake')) AS extensions,
        EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
                JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                WHERE n.nspname = 'pgtrickle' AND c.relname = 'pgt_stream_tables'
                  AND a.attname = 'requested_refresh_mode' AND NOT a.attisdropped)
            AS requested_refresh_mode,
        EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                WHERE n.nspname = 'pgstream_lite' AND c.relname = 'dependency_names'
                  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                  AND pg_catalog.has_table_privilege(c.oid, 'SELECT'))
            AS dependency_names
    {%- endset -%}
    {%- set row = run_query(detect).rows[0] -%}
    {%- do found.update({'pgtrickle': row['pgtrickle'], 'pgstream': row['pgstream'],
                         'requested_refresh_mode': row['requested_refresh_mode'],
                         'dependency_names': row['dependency_names']}) -%}
    {%- for item in (row['extensions'] or '').split(',') if item -%}
      {%- do found.update({item.split(' ')[0]: item.split(' ')[1]}) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set wanted = var('dbt_pgstream_engine', none) -%}
  {%- if wanted not in [none, 'pg_stream', 'pg_trickle'] -%}
    {{ exceptions.raise_compiler_error("dbt_pgstream: var dbt_pgstream_engine="
        ~ wanted ~ " is not allowed; expected 'pg_stream' or 'pg_trickle' (or leave it unset "
        ~ "to detect the engine)") }}
  {%- endif -%}
  {%- if wanted == 'pg_trickle' or (wanted is none and found.pgtrickle) -%}
    {%- set names = dbt_pgstream._pgstream_engine_names('pg_trickle') -%}
    {%- do names.update({'engine': 'pg_trickle' if found.pgtrickle else none,
                         'version': found.get('pg_trickle')}) -%}
  {%- else -%}
    {%- set names = dbt_pgstream._pgstream_engine_names('pg_stream') -%}
    {%- if not found.pgstream -%}
      {%- set engine = none -%}
    {%- elif found.get('pg_stream') -%}
      {%- set engine = 'pg_stream' -%}
    {%- else -%}
      {%- set engine = 'pgstream-lite' -%}
    {%- endif -%}
    {%- do names.update({'engine': engine, 'version': found.get('pg_stream')}) -%}
  {%- endif -%}
  {#- defects of pg_stream 0.1 the package works around or refuses up front (_engine_limits.sql) -#}
  {%- do names.update({'pg_stream_01': names.engine == 'pg_stream'
                                       and (names.version or '').startswith('0.1'),
                       'serialize_creates': names.engine in ['pg_stream', 'pg_trickle'],
                       'repair_after_source_recreated': names.engine == 'pg_trickle',
                       'quotes_names': names.engine not in ['pg_stream', 'pg_trickle'],
                       'drop_needs_cascade': names.api == 'pg_trickle',
                       'unique_row_id_for_counted': names.engine == 'pg_trickle'}) -%}
  {#- pg_trickle's options (_options.sql), the refresh modes beyond FULL and DIFFERENTIAL, an
      in-place query change (alter_stream_table(query => ...)), and what the target database
      has for the options that need another extension (citus, pg_mooncake);
      requested_refresh_mode: the catalog keeps the mode asked for next to the one AUTO resolved
      to (pg_trickle 0.108; 0.67 keeps only the resolved one, so AUTO is never a change there). -#}
  {%- do names.update({'options': names.api == 'pg_trickle',
                       'refresh_modes': ['FULL', 'DIFFERENTIAL', 'AUTO', 'IMMEDIATE']
                                        if names.api == 'pg_trickle'
                                        else ['FULL', 'DIFFERENTIAL'],
                       'alter_query': names.api == 'pg_trickle',
                       'requested_refresh_mode': names.api == 'pg_trickle'
                                                 and found.get('requested_refresh_mode', false),
                       'extensions': [found.get('citus') and 'citus',
                                      found.get('pg_mooncake') and 'pg_mooncake']
                                     | select | list}) -%}
  {#- columns_used_from_capture: the engine leaves the dependencies' columns_used NULL
      (pg_stream 0.1): the columns a stream table depends on are then those its sources' change
      capture copies (changes_schema: where the change buffers are; _pgstream_sql_columns_used) -#}
  {%- do names.update({'columns_used_from_capture': names.pg_stream_01}) -%}
  {#- dependency_names: pgstream-lite records the schema and name of each relation a stream
      table reads (pgstream_lite.dependency_names), so a dropped one can be named in messages;
      used where the caller may read it -#}
  {%- do names.update({'dependency_names': names.engine == 'pgstream-lite'
                                           and found.get('dependency_names', false)}) -%}
  {%- if execute and graph is mapping and names.engine is not none -%}
    {%- do graph.update({cache_key: names}) -%}
  {%- endif -%}
  {{ return(names) }}
{% endmacro %}


{#- Private: the names of one SQL API ('pg_stream' or 'pg_trickle'). -#}
{% macro _pgstream_engine_names(api) %}
  {%- if api == 'pg_trickle' -%}
    {%- set schema, prefix, extension = 'pgtrickle', 'pgt', 'pg_trickle' -%}
  {%- else -%}
    {%- set schema, prefix, extension = 'pgstream', 'pgs', 'pg_stream' -%}
  {%- endif -%}
  {{ return({
      'api': api,
      'extension': extension,
      'schema': schema,
      'prefix': prefix,
      'stream_tables': schema ~ '.' ~ prefix ~ '_stream_tables',
      'dependencies': schema ~ '.' ~ prefix ~ '_dependencies',
      'refresh_history': schema ~ '.' ~ prefix ~ '_refresh_history',
      'stat': schema ~ '.pg_stat_stream_tables',
      'info': schema ~ '.stream_tables_info',
      'id': prefix ~ '_id',
      'relid': prefix ~ '_relid',
      'st_name': prefix ~ '_name',
      'st_schema': prefix ~ '_schema',
      'row_id': '__' ~ prefix ~ '_row_id',
      'count': '__' ~ prefix ~ '_count',
      'internal_prefix': '__' ~ prefix ~ '_',
      'changes_schema': schema ~ '_changes',
      'change_tracking': schema ~ '.' ~ prefix ~ '_change_tracking',
      'alter_sets_calculated': api == 'pg_trickle',
      'resume_fn': schema ~ '.resume_stream_table' if api == 'pg_trickle' else none,
  }) }}
{% endmacro %}


{#- Private: `schema.function` of the engine's API (e.g. pgtrickle.refresh_stream_table). -#}
{% macro _pgstream_fn(name, engine=none) -%}
  {%- set e = engine if engine is not none else dbt_pgstream._pgstream_engine() -%}
  {{- e.schema ~ '.' ~ name -}}
{%- endmacro %}


{#- Private: the schedule argument for a schedule (none = CALCULATED): pg_stream takes NULL,
    pg_trickle takes 'calculated' (NULL is an error there). -#}
{% macro _pgstream_schedule_arg(schedule, engine=none) -%}
  {%- set e = engine if engine is not none else dbt_pgstream._pgstream_engine() -%}
  {%- if schedule is none and e.api == 'pg_trickle' -%}
    {{- dbt_pgstream._pgstream_literal('calculated') -}}
  {%- else -%}
    {{- dbt_pgstream._pgstream_literal(schedule) -}}
  {%- endif -%}
{%- endmacro %}


{#- Private: the SQL that resumes a SUSPENDED stream table, for messages. -#}
{% macro _pgstream_resume_hint(name_text='name', engine=none) -%}
  {%- set e = engine if engine is not none else dbt_pgstream._pgstream_engine() -%}
  {%- if e.resume_fn -%}
    SELECT {{ e.resume_fn }}({{ name_text }})
  {%- else -%}
    SELECT {{ e.schema }}.alter_stream_table({{ name_text }}, status => 'ACTIVE')
  {%- endif -%}
{%- endmacro %}
