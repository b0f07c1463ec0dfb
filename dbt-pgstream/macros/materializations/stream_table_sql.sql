{#- Private: the act statement of the stream_table materialization, one per action. Each returns
    SQL text (statements joined by ';', run as one statement: one implicit transaction even on
    an autocommit connection) and runs nothing. Each starts with the model's advisory lock and
    re-checks under it (create ... WHERE NOT EXISTS, drop ... WHERE <still needs replacing>,
    alter ... WHERE <still differs>), so that of two dbt processes deploying the same model at
    once the second does nothing; its last SELECT says whether this statement called the API
    (false: a concurrent run deployed this definition first). Indexes, comments and grants
    (_pgstream_post_sql) are applied in the same statement. -#}


{#- Private: create the stream table (nothing is there). -#}
{% macro _pgstream_get_create_sql(relation, cfg, query, state) %}
  {{ return(dbt_pgstream._pgstream_get_deploy_sql(relation, cfg, query, state, none)) }}
{% endmacro %}


{#- Private: replace what is there (a stream table, or a plain relation in the way) by a new
    stream table; `full_refresh` (bool) replaces whatever differs. -#}
{% macro _pgstream_get_replace_sql(relation, cfg, query, full_refresh, state) %}
  {%- set engine = dbt_pgstream._pgstream_engine() -%}
  {%- set drop = [] -%}
  {%- if state.is_stream_table -%}
    {%- set condition = dbt_pgstream._pgstream_sql_needs_replace(query, cfg.schedule,
        full_refresh, options=cfg.options) -%}
    {%- set condition = dbt_pgstream._pgstream_citus_replace_condition(condition, cfg) -%}
    {%- if engine.pg_stream_01 and state.upstream_replaced -%}
      {%- do drop.append(dbt_pgstream._pgstream_drop_storage_sql(relation, condition)) -%}
    {%- else -%}
      {#- cascade: where the engine refuses to drop a stream table others read (pg_trickle),
          they go with it; their models create them again when they run -#}
      {%- do drop.append(dbt_pgstream.drop_stream_table(relation, condition=condition,
                                                          cascade=true)) -%}
    {%- endif -%}
    {%- if state.relation_kind is not none and not state.storage_is_relation -%}
      {#- the plain relation standing there (its catalog row was dropped just above) -#}
      {%- do drop.append(dbt_pgstream._pgstream_drop_plain_relation_sql(relation)) -%}
    {%- endif -%}
  {%- endif -%}
  {{ return(dbt_pgstream._pgstream_get_deploy_sql(relation, cfg, query, state, drop)) }}
{% endmacro %}


{#- Private: create, after the statements `drop` (none for a plain create). -#}
{% macro _pgstream_get_deploy_sql(relation, cfg, query, state, drop) %}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set engine = dbt_pgstream._pgstream_engine() -%}
  {%- set plain_relation = state.relation_kind is not none and not state.is_stream_table -%}
  {%- set statements = [dbt_pgstream._pgstream_lock_sql(relation),
                        dbt_pgstream._pgstream_reset_acted_sql()] -%}
  {%- if not state.schema_exists -%}
    {#- only a stream_table_schema override can be missing (dbt creates model schemas); models
        sharing it may be built in parallel: serialise the CREATE SCHEMA on the schema name -#}
    {%- do statements.append('SELECT pg_catalog.pg_advisory_xact_lock('
        ~ 'pg_catalog.hashtextextended('
        ~ lit('dbt_pgstream:schema:' ~ relation.schema) ~ ', 0))') -%}
    {%- do statements.append('CREATE SCHEMA IF NOT EXISTS '
        ~ dbt_pgstream._pgstream_ident(relation.schema)) -%}
  {%- endif -%}
  {%- if plain_relation -%}
    {%- do statements.append(dbt_pgstream._pgstream_drop_plain_relation_sql(relation)) -%}
  {%- endif -%}
  {%- if engine.serialize_creates -%}
    {%- do statements.append(dbt_pgstream._pgstream_create_lock_sql()) -%}
  {%- endif -%}
  {%- set statements = statements + (drop or [])
      + dbt_pgstream._pgstream_citus_before_create_sql(cfg) -%}
  {%- do statements.append(dbt_pgstream.create_stream_table(
      relation, query, cfg.schedule, cfg.refresh_mode, cfg.initialize, cfg.options)) -%}
  {%- set statements = statements
      + dbt_pgstream._pgstream_citus_after_create_sql(relation, cfg) -%}
  {%- if engine.pg_stream_01 and cfg.refresh_mode == 'DIFFERENTIAL' -%}
    {%- do statements.append(dbt_pgstream._pgstream_assert_no_shared_differential_sql(
        relation)) -%}
  {%- endif -%}
  {%- if engine.unique_row_id_for_counted -%}
    {%- do statements.append(dbt_pgstream._pgstream_unique_row_id_sql(relation)) -%}
  {%- endif -%}
  {%- if drop and state.upstream_replaced and engine.repair_after_source_recreated -%}
    {%- do statements.append(dbt_pgstream._pgstream_repair_sql(relation)) -%}
    {%- if cfg.initialize -%}
      {#- the repair marks the table for a full refresh: do it now, as a create would -#}
      {%- do statements.append(dbt_pgstream.refresh_stream_table(relation)) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if cfg.status is not none -%}
    {%- do statements.append(dbt_pgstream.alter_stream_table(relation, status=cfg.status)
        ~ '\n  AND st.status IS DISTINCT FROM ' ~ lit(cfg.status)) -%}
  {%- endif -%}
  {%- set statements = statements + dbt_pgstream._pgstream_post_sql(relation, cfg, state, true)
      + [dbt_pgstream._pgstream_acted_sql()] -%}
  {{ return(statements | join(';\n') ~ ';\n') }}
{% endmacro %}


{#- Private: alter the stream table in place with the `changes` (from _pgstream_get_changes, none
    needing a replace): one alter_stream_table() call with the arguments that changed (re-checked
    under the lock), then the indexes, comments and grants. An alter of indexes only calls no
    API function. -#}
{% macro _pgstream_get_alter_sql(relation, cfg, query, state, changes) %}
  {%- set engine = dbt_pgstream._pgstream_engine() -%}
  {%- set statements = [dbt_pgstream._pgstream_lock_sql(relation),
                        dbt_pgstream._pgstream_reset_acted_sql()] -%}
  {%- set args = {} -%}
  {%- set options = {} -%}
  {%- for change in changes if change.what != 'indexes' -%}
    {%- if change.what in cfg.options -%}
      {%- do options.update({change.what: cfg.options[change.what]}) -%}
    {%- else -%}
      {%- do args.update({change.what: change.new}) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set calls_api = args or options -%}
  {%- if calls_api -%}
    {%- if 'query' in args and engine.serialize_creates -%}
      {#- a query change re-creates change capture as a create does, and races like one:
          concurrent ones over one source fail (`tuple concurrently updated`: pg_trickle 0.67) -#}
      {%- do statements.append(dbt_pgstream._pgstream_create_lock_sql()) -%}
    {%- endif -%}
    {%- do statements.append(dbt_pgstream.alter_stream_table(relation,
        schedule=args.get('schedule'), refresh_mode=args.get('refresh_mode'),
        status=args.get('status'), query=query if 'query' in args else none, options=options)
        ~ '\n  AND ' ~ dbt_pgstream._pgstream_sql_alter_needed(query, cfg, args, options)) -%}
    {%- if 'query' in args and engine.unique_row_id_for_counted -%}
      {%- do statements.append(dbt_pgstream._pgstream_unique_row_id_sql(relation)) -%}
    {%- endif -%}
    {%- if engine.pg_stream_01 and args.get('refresh_mode') == 'DIFFERENTIAL' -%}
      {%- do statements.append(dbt_pgstream._pgstream_assert_no_shared_differential_sql(
          relation)) -%}
    {%- endif -%}
  {%- endif -%}
  {%- set post = dbt_pgstream._pgstream_post_sql(relation, cfg, state, false) -%}
  {%- if 'query' in args -%}
    {#- pg_trickle rebuilds the storage table (a new oid, without grants, indexes or comments)
        when a column's type changes incompatibly: apply them as for a new table too, each
        statement being a no-op where the table kept them -#}
    {%- for statement in dbt_pgstream._pgstream_post_sql(relation, cfg, state, true)
          if statement not in post -%}
      {%- do post.append(statement) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set statements = statements + post -%}
  {%- if calls_api -%}
    {%- do statements.append(dbt_pgstream._pgstream_acted_sql()) -%}
  {%- endif -%}
  {{ return(statements | join(';\n') ~ ';\n') }}
{% endmacro %}


{#- Private: a DO block dropping the plain table / view / materialized view / foreign table that
    stands where the stream table goes, unless it has meanwhile become a stream table (a
    concurrent deploy won the lock). Literals only; the body is itself a single-quoted literal. -#}
{% macro _pgstream_drop_plain_relation_sql(relation) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set body -%}
DECLARE kind "char";
BEGIN
  SELECT c.relkind INTO kind
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = {{ lit(relation.schema) }} AND c.relname = {{ lit(relation.identifier) }};
  IF kind IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM {{ dbt_pgstream._pgstream_engine().stream_tables }} AS st
      WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }}) THEN
    EXECUTE pg_catalog.format('DROP %s %I.%I CASCADE',
        CASE kind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                  WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
        {{ lit(relation.schema) }}, {{ lit(relation.identifier) }});
  END IF;
END
  {%- endset -%}
DO {{ lit(body) }}
{%- endmacro %}
