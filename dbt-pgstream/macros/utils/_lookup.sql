{#- Private: the materialization's ONE catalog round trip. Returns a dict with what exists under
    `relation`'s schema and name (relation_kind: none, 'table', 'view', ...; is_stream_table) and, for a
    stream table, whether it must be replaced (and why) or altered (and from what). Every
    comparison happens in SQL, so no query text travels back through agate. -#}
{% macro _pgstream_lookup(relation, cfg, query) %}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_lookup', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT
        CASE rel.relkind
            WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
            ELSE 'relation of relkind ' || rel.relkind::text
        END AS relation_kind,
        (st.{{ e.id }} IS NOT NULL) AS is_stream_table,
        COALESCE(st.{{ e.relid }} = rel.oid, false) AS storage_is_relation,
        EXISTS (SELECT 1 FROM pg_catalog.pg_namespace AS sch
                WHERE sch.nspname = {{ lit(relation.schema) }}) AS schema_exists,
        COALESCE(st.schedule, 'CALCULATED') AS old_schedule,
        st.refresh_mode AS old_refresh_mode,
        st.status AS old_status,
        COALESCE({{ dbt_pgstream._pgstream_sql_query_changed(query) }}, false) AS query_changed,
        COALESCE({{ dbt_pgstream._pgstream_sql_storage_missing() }}, false) AS storage_missing,
        COALESCE({{ dbt_pgstream._pgstream_sql_upstream_replaced() }}, false) AS upstream_replaced,
        COALESCE({{ dbt_pgstream._pgstream_sql_source_column_dropped() }}, false)
            AS source_column_dropped,
        COALESCE({{ dbt_pgstream._pgstream_sql_schedule_cleared(cfg.schedule, 'st',
                                                                 cfg.refresh_mode) }}, false)
            AS schedule_cleared,
        {%- if cfg.refresh_mode == 'IMMEDIATE' %}
        false AS schedule_changed,{#- an IMMEDIATE stream table has no schedule -#}
        {%- else %}
        COALESCE(st.schedule IS DISTINCT FROM {{ lit(cfg.schedule) }}, false) AS schedule_changed,
        {%- endif %}
        COALESCE({{ dbt_pgstream._pgstream_sql_refresh_mode_differs(cfg.refresh_mode) }}, false)
            AS refresh_mode_changed,
        {{ dbt_pgstream._pgstream_sql_option_state(cfg.options) }} AS option_state,
        COALESCE(st.status IS DISTINCT FROM {{ lit(cfg.status) }}, false) AS status_changed,
        {{ dbt_pgstream._pgstream_sql_managed_indexes() }} AS managed_indexes,
        {{ dbt_pgstream._pgstream_sql_current_grants() }} AS current_grants,
        {{ dbt_pgstream._pgstream_sql_current_comments() }} AS current_comments,
        {{ dbt_pgstream._pgstream_sql_dependent_stream_tables() }} AS dependent_stream_tables,
        {{ dbt_pgstream._pgstream_sql_orphans() }} AS orphans,
        {{ dbt_pgstream._pgstream_sql_orphan_captures() }} AS orphan_captures,
        {{ dbt_pgstream._pgstream_sql_citus_distribution(cfg) }} AS citus_distribution
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN (pg_catalog.pg_class AS rel
               JOIN pg_catalog.pg_namespace AS ns ON ns.oid = rel.relnamespace)
        ON ns.nspname = {{ lit(relation.schema) }} AND rel.relname = {{ lit(relation.identifier) }}
    LEFT JOIN {{ e.stream_tables }} AS st
        ON {{ dbt_pgstream._pgstream_catalog_match(relation) }}
  {%- endcall -%}
  {%- set row = load_result('pgstream_lookup').table.rows[0] -%}
  {%- set state = {} -%}
  {%- for column in ['relation_kind', 'is_stream_table', 'storage_is_relation', 'schema_exists', 'old_schedule', 'old_refresh_mode',
                     'old_status', 'query_changed', 'storage_missing', 'upstream_replaced',
                     'source_column_dropped',
                     'schedule_cleared', 'schedule_changed', 'refresh_mode_changed',
                     'status_changed'] -%}
    {%- set value = row[column] -%}
    {%- if value is none or value is sameas true or value is sameas false -%}
      {%- do state.update({column: value}) -%}
    {%- else -%}
      {%- do state.update({column: value | string}) -%}
    {%- endif -%}
  {%- endfor -%}
  {#- JSON text columns (indexes, grants, comments: see _indexes.sql, _grants_docs.sql) -#}
  {%- for column, empty in [('managed_indexes', []), ('current_grants', {}),
                            ('current_comments', {}), ('dependent_stream_tables', []),
                            ('orphans', []), ('orphan_captures', []), ('option_state', {}),
                            ('citus_distribution', {})] -%}
    {%- set value = row[column] -%}
    {%- do state.update({column: fromjson(value | string) if value is not none else empty}) -%}
  {%- endfor -%}
  {{ return(state) }}
{% endmacro %}


{#- JSON text: [[schema, name], ...] of the stream tables that read this one, or NULL: a
    replace drops them with it where the engine does so (drop_needs_cascade: pg_trickle; for
    dbt's cache), and leaves them reading a dropped relation elsewhere (pg_stream, pgstream-lite)
    until their own model replaces them; the run's log names those this run does not rebuild. -#}
{% macro _pgstream_sql_dependent_stream_tables(alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(down.{{ e.st_schema }},
                                                          down.{{ e.st_name }})
                              ORDER BY down.{{ e.st_schema }}, down.{{ e.st_name }})::text
   FROM {{ e.stream_tables }} AS down
   WHERE down.{{ e.id }} <> {{ alias }}.{{ e.id }}
     AND EXISTS (SELECT 1 FROM {{ e.dependencies }} AS dep
                 WHERE dep.{{ e.id }} = down.{{ e.id }}
                   AND dep.source_relid = {{ alias }}.{{ e.relid }}))
{%- endmacro %}


{#- JSON text: [[schema, name, materialized], ...] of the stream tables left at the relation of a
    model (or snapshot) of the project that is no longer a stream_table model (switched to table,
    view, incremental, ...): dbt's own materialization replaced the relation (the catalog row of
    the dropped storage table is left where the engine keeps it: pgstream-lite has no event
    trigger) or reuses it (incremental, snapshot: on every engine). NULL when the project has no
    such model. -#}
{% macro _pgstream_sql_orphans() -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set others = dbt_pgstream._pgstream_former_stream_table_candidates() -%}
  {%- if others | length == 0 -%}
  NULL::text
  {%- else -%}
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(o.{{ e.st_schema }}, o.{{ e.st_name }},
                                                          w.materialized)
                              ORDER BY o.{{ e.st_schema }}, o.{{ e.st_name }})::text
   FROM {{ e.stream_tables }} AS o
   JOIN (VALUES
   {%- for other in others %}
       ({{ lit(other[0]) }}, {{ lit(other[1]) }}, {{ lit(other[2]) }}){{ ',' if not loop.last }}
   {%- endfor %}
   ) AS w (schema_name, table_name, materialized)
     ON o.{{ e.st_schema }} = w.schema_name AND o.{{ e.st_name }} = w.table_name
   {# A model that rebuilds its relation (table, view, materialized view, ...) drops the storage
       table itself when it runs (possibly right now, on another thread): only its catalog row
       is left to remove once the storage is gone, and the package never drops a relation dbt
       is replacing. An incremental model or a snapshot reuses the relation it finds: the stream
       table must go (the storage with it) for dbt to build the model. #}
   WHERE w.materialized IN ('incremental', 'snapshot')
      OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS storage
                     WHERE storage.oid = o.{{ e.relid }}))
  {%- endif -%}
{%- endmacro %}


{#- Private: [schema, name, materialized] of each model and snapshot of the project that is not
    a stream_table model and has a relation (not ephemeral), with the names PostgreSQL gives
    them (_pgstream_folded_name). Computed once per dbt invocation (kept in `graph`). -#}
{% macro _pgstream_former_stream_table_candidates() %}
  {%- set cache_key = '__dbt_pgstream_not_stream_tables__' -%}
  {%- if graph is mapping and graph.get(cache_key) is not none -%}
    {{ return(graph[cache_key]) }}
  {%- endif -%}
  {%- set found = [] -%}
  {%- for node in graph.nodes.values()
        if node.resource_type in ['model', 'snapshot']
        and node.config.materialized not in ['stream_table', 'ephemeral'] -%}
    {%- set quoting = node.config.get('quoting') or {} -%}
    {%- do found.append([
        dbt_pgstream._pgstream_folded_name(node.schema, 'schema', quoting),
        dbt_pgstream._pgstream_folded_name(node.alias, 'identifier', quoting),
        node.config.materialized | string]) -%}
  {%- endfor -%}
  {%- if graph is mapping -%}{%- do graph.update({cache_key: found}) -%}{%- endif -%}
  {{ return(found) }}
{% endmacro %}


{#- JSON text: [[schema, name], ...] of the tables whose change capture is left with no stream
    table reading them: a row of the engine's change tracking for a table no catalog dependency
    names. pg_stream 0.1 and pg_trickle 0.67 leave it (triggers, change buffer) when dbt drops
    a stream table's storage table (their event trigger deletes the catalog row only), and every
    write to the table then keeps filling the buffer. -#}
{% macro _pgstream_sql_orphan_captures() -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(sn.nspname, src.relname)
                              ORDER BY sn.nspname, src.relname)::text
   FROM {{ e.change_tracking }} AS ct
   JOIN pg_catalog.pg_class AS src ON src.oid = ct.source_relid
   JOIN pg_catalog.pg_namespace AS sn ON sn.oid = src.relnamespace
   WHERE src.relkind IN ('r', 'p')
     AND NOT EXISTS (SELECT 1 FROM {{ e.dependencies }} AS dep
                     WHERE dep.source_relid = ct.source_relid))
{%- endmacro %}


{#- Private: removes what models switched away from stream_table left behind, and says so:
    the stream tables `orphans` (from the look-up), each with the engine's drop_stream_table
    under the model lock of its relation and only if it is still there; and the change capture
    `captures` of tables no stream table reads, released through the engine's own API (a
    throw-away FULL stream table over the table, created uninitialised in `schema` and dropped
    at once: the drop removes the capture of a source nothing else reads). Runs in the model's
    transaction, before its own act. -#}
{% macro _pgstream_remove_orphans(orphans, captures, schema) %}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set statements = [] -%}
  {%- set names = [] -%}
  {%- for orphan in orphans -%}
    {%- set relation = api.Relation.create(database=target.database, schema=orphan[0],
                                           identifier=orphan[1], type='table') -%}
    {%- do statements.append(dbt_pgstream._pgstream_lock_sql(relation)) -%}
    {%- do statements.append(dbt_pgstream.drop_stream_table(relation, cascade=true)) -%}
    {%- do names.append(orphan[0] ~ '.' ~ orphan[1] ~ ' (now ' ~ orphan[2] ~ ')') -%}
  {%- endfor -%}
  {%- set released = [] -%}
  {%- if schema is not none -%}
    {%- set probe = api.Relation.create(database=target.database, schema=schema,
                                        identifier='__dbt_pgstream_release', type='table') -%}
    {%- for capture in captures -%}
      {%- set source = api.Relation.create(database=target.database, schema=capture[0],
                                           identifier=capture[1], type='table') -%}
      {%- set still_orphaned = "NOT EXISTS (SELECT 1 FROM " ~ e.dependencies ~ " AS dep "
          ~ "WHERE dep.source_relid = " ~ lit(dbt_pgstream._pgstream_ident(capture[0]) ~ '.'
          ~ dbt_pgstream._pgstream_ident(capture[1])) ~ "::regclass)" -%}
      {%- do statements.append(dbt_pgstream._pgstream_lock_sql(probe)) -%}
      {%- if e.serialize_creates -%}
        {%- do statements.append(dbt_pgstream._pgstream_create_lock_sql()) -%}
      {%- endif -%}
      {%- do statements.append(dbt_pgstream.create_stream_table(probe,
          'SELECT * FROM ' ~ dbt_pgstream._pgstream_ident(capture[0]) ~ '.'
          ~ dbt_pgstream._pgstream_ident(capture[1]), none, 'FULL', false)
          ~ '\n  AND ' ~ still_orphaned) -%}
      {%- do statements.append(dbt_pgstream.drop_stream_table(probe)) -%}
      {%- do released.append(capture[0] ~ '.' ~ capture[1]) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- if statements -%}
    {%- call statement('pgstream_orphans') -%}
      {{ statements | join(';\n') }}
    {%- endcall -%}
  {%- endif -%}
  {%- if names -%}
    {{ log('dbt_pgstream: removed the stream table(s) left at ' ~ names | join(', ')
           ~ ': their model is no longer a stream_table model (its catalog row and change '
           ~ 'capture are gone; dbt builds the model as configured when it runs)', info=True) }}
  {%- endif -%}
  {%- if released -%}
    {{ log('dbt_pgstream: released the change capture left on ' ~ released | join(', ')
           ~ ' (no stream table reads it any more: a stream table of a model switched to '
           ~ 'another materialization was dropped)', info=True) }}
  {%- endif -%}
{% endmacro %}


{#- Private: predicate: the stream table's refresh mode differs from `refresh_mode`. AUTO is the
    mode pg_trickle resolves (to DIFFERENTIAL or FULL) at create and stores resolved: where the
    catalog keeps the requested mode too (requested_refresh_mode: pg_trickle 0.108) that is
    compared, and where it does not (0.67) AUTO is never a change. -#}
{% macro _pgstream_sql_refresh_mode_differs(refresh_mode, alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if e.requested_refresh_mode -%}
  {{ alias }}.requested_refresh_mode IS DISTINCT FROM {{ dbt_pgstream._pgstream_literal(refresh_mode) }}
  {%- elif refresh_mode == 'AUTO' -%}
  false
  {%- else -%}
  {{ alias }}.refresh_mode IS DISTINCT FROM {{ dbt_pgstream._pgstream_literal(refresh_mode) }}
  {%- endif -%}
{%- endmacro %}
