{#-
  The `stream_table` materialization: deploys a model as a pg_stream stream table.

  Shape (like dbt's materialized_view): set up (validate config, resolve the relation), ONE
  catalog look-up, decide (create / alter / replace / unchanged), act in ONE statement, tear down
  (hooks, grants, docs, commit, cache) and return the relation.

  The act statement starts with a transaction-scoped advisory lock on the stream table's name and
  re-checks every condition under it, so it is atomic (one implicit transaction even on an
  autocommit connection) and two dbt processes deploying the same model at once both succeed.
-#}
{% materialization stream_table, adapter='postgres' %}

  {#-- setup: validate everything before any SQL runs --#}
  {%- set cfg = dbt_pgstream._pgstream_stream_table_config() -%}
  {%- set query = dbt_pgstream._pgstream_query_text(sql) -%}
  {%- set full_refresh = should_full_refresh() -%}
  {%- if cfg.name == this.identifier and cfg.schema == this.schema -%}
    {%- set target_relation = this.incorporate(type='table') -%}
  {%- else -%}
    {%- set target_relation = api.Relation.create(
        database=this.database, schema=cfg.schema, identifier=cfg.name, type='table') -%}
  {%- endif -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {#-- contract (only when enforced), --empty (never deploys), else the one catalog look-up,
       then the decision --#}
  {%- set contract_checked = dbt_pgstream._pgstream_contract_enforced() -%}
  {%- if contract_checked -%}
    {%- do dbt_pgstream._pgstream_assert_contract(query) -%}
  {%- endif -%}
  {%- if dbt_pgstream._pgstream_is_empty_run() -%}
    {%- set plan = dbt_pgstream._pgstream_empty_run_check(query, contract_checked) -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_assert_engine_supports(target_relation, cfg, query) -%}
    {%- set state = dbt_pgstream._pgstream_lookup(target_relation, cfg, query) -%}
    {%- if state.orphans or state.orphan_captures -%}
      {#- stream tables (or change capture) left behind by models switched to another
          materialization -#}
      {%- do dbt_pgstream._pgstream_remove_orphans(state.orphans, state.orphan_captures,
          target_relation.schema if state.schema_exists else none) -%}
    {%- endif -%}
    {%- set plan = dbt_pgstream._pgstream_plan(target_relation, cfg, query, full_refresh,
                                               state) -%}
  {%- endif -%}

  {#-- act --#}
  {%- if plan.action in ['unchanged', 'skipped'] -%}
    {%- call noop_statement('main', message=plan.message,
                            code=dbt_pgstream._pgstream_result_code(plan.action),
                            rows_affected=-1) -%}
      -- dbt_pgstream: {{ target_relation }} {{ plan.action }}: no SQL was executed
    {%- endcall -%}
    {%- if plan.post -%}
      {#- grants / comments that differ on a stream table left in place -#}
      {%- call statement('pgstream_reconcile') -%}
        {{ plan.post | join(';\n') }}
      {%- endcall -%}
      {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
             ~ target_relation.identifier ~ '): reconciled: ' ~ plan.post | join('; '),
             info=True) }}
    {%- endif -%}
  {%- else -%}
    {%- call statement('main', fetch_result=True) -%}
      {{ plan.sql }}
    {%- endcall -%}
    {%- set acted = load_result('main').table.rows -%}
    {%- if acted | length > 0 and acted[0][0] is sameas false -%}
      {%- do plan.update({'action': 'unchanged',
                          'message': 'unchanged (deployed by a concurrent run)'}) -%}
    {%- endif -%}
    {%- do store_raw_result(name='main', message=plan.message,
                            code=dbt_pgstream._pgstream_result_code(plan.action),
                            rows_affected=-1) -%}
  {%- endif -%}
  {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
         ~ target_relation.identifier ~ '): ' ~ plan.message, info=True) }}
  {%- if plan.action == 'replaced' and plan.get('dropped_with_it') -%}
    {%- set dropped = [] -%}
    {%- for down in plan.dropped_with_it -%}
      {%- do dropped.append(down[0] ~ '.' ~ down[1]) -%}
      {%- do adapter.cache_dropped(api.Relation.create(database=target_relation.database,
          schema=down[0], identifier=down[1], type='table')) -%}
    {%- endfor -%}
    {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
           ~ target_relation.identifier ~ '): the stream tables reading it were dropped with it ('
           ~ dbt_pgstream._pgstream_engine().engine ~ ' drops them on a replace): '
           ~ dropped | join(', ') ~ '; their models create them again when they run',
           info=True) }}
  {%- endif %}
  {#-- refresh_on_run: a stream table left in place (unchanged / altered) is refreshed now, so
       what runs after this model (tests, downstream models) sees fresh data --#}
  {%- if cfg.refresh_on_run and plan.action in ['unchanged', 'altered'] -%}
    {%- call statement('pgstream_refresh_on_run') -%}
      {{ dbt_pgstream.refresh_stream_table(target_relation) }}
    {%- endcall -%}
    {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
           ~ target_relation.identifier ~ '): refreshed (refresh_on_run)', info=True) }}
  {%- endif -%}

  {#-- teardown --#}
  {%- if plan.action in ['created', 'replaced'] -%}
    {#- a replace drops the old relation (CASCADE): forget it and its dependents in the cache -#}
    {%- do adapter.cache_dropped(target_relation) -%}
  {%- endif -%}
  {#- grants and persist_docs were applied with the act (or reconciled above) from the look-up:
      see macros/utils/_grants_docs.sql -#}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  -- `COMMIT` happens here:
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [] if plan.action == 'skipped' else [target_relation]}) }}

{% endmaterialization %}


{#- Private: decide what to do from the look-up `state`. Returns a dict with action (created,
    altered, replaced, unchanged), message (the stable log text) and sql (the act statement). -#}
{% macro _pgstream_plan(relation, cfg, query, full_refresh, state) %}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set engine = dbt_pgstream._pgstream_engine() -%}
  {%- set plain_relation = state.relation_kind is not none and not state.is_stream_table -%}
  {%- set reasons = [] -%}
  {%- set config_reasons = [] -%}
  {%- set changes = [] -%}

  {%- if plain_relation -%}
    {%- if state.relation_kind not in ['table', 'view', 'materialized view', 'foreign table'] -%}
      {{ exceptions.raise_compiler_error(
          "dbt_pgstream: cannot deploy stream_table model '" ~ model.name ~ "': " ~ relation
          ~ " already exists as a " ~ state.relation_kind ~ ", which dbt_pgstream does not replace") }}
    {%- endif -%}
    {%- do reasons.append('was a ' ~ state.relation_kind) -%}
  {%- elif state.is_stream_table -%}
    {#- a plain relation stands where the catalog row points (the model was switched to table
        or view and back, on an engine that keeps the row of a dropped storage table) -#}
    {%- set replaced_relation = state.relation_kind is not none
        and not state.storage_is_relation -%}
    {%- if replaced_relation -%}
      {%- do reasons.append('was a ' ~ state.relation_kind) -%}
    {%- endif -%}
    {%- if full_refresh -%}{%- do reasons.append('full refresh') -%}{%- endif -%}
    {%- if state.query_changed -%}
      {%- do reasons.append('query changed') -%}{%- do config_reasons.append('query changed') -%}
    {%- endif -%}
    {%- if state.storage_missing and not replaced_relation -%}
      {%- do reasons.append('storage table missing') -%}
    {%- endif -%}
    {%- if state.upstream_replaced -%}{%- do reasons.append('upstream replaced') -%}{%- endif -%}
    {%- if state.source_column_dropped -%}
      {%- do reasons.append('source column dropped') -%}
    {%- endif -%}
    {%- if state.schedule_cleared -%}
      {%- do reasons.append('schedule ' ~ state.old_schedule ~ ' -> CALCULATED') -%}
      {%- do config_reasons.append(reasons[-1]) -%}
    {%- endif -%}
    {#- pg_trickle's options: changed in place where its alter can, else by a replace -#}
    {%- for key, held in state.option_state.items() if held[1] -%}
      {%- set wanted = dbt_pgstream._pgstream_option_text(cfg.options[key]) -%}
      {%- if dbt_pgstream._pgstream_option_spec(key).alter -%}
        {%- do changes.append([key, held[0] or 'none', wanted]) -%}
      {%- else -%}
        {%- do reasons.append(key ~ ' ' ~ (held[0] or 'none') ~ ' -> ' ~ wanted) -%}
        {%- do config_reasons.append(reasons[-1]) -%}
      {%- endif -%}
    {%- endfor -%}
    {#- a query change alone is applied in place where the engine's alter can (pg_trickle):
        the stream table keeps its oid, grants and rows -#}
    {%- if engine.alter_query and reasons == ['query changed'] -%}
      {%- set reasons = [] -%}
      {%- set config_reasons = [] -%}
      {%- do changes.append(['query', none, none]) -%}
    {%- endif -%}
    {%- if cfg.schedule is not none and state.schedule_changed -%}
      {%- do changes.append(['schedule', state.old_schedule, cfg.schedule]) -%}
    {%- elif cfg.schedule is none and state.schedule_changed
          and dbt_pgstream._pgstream_engine().alter_sets_calculated -%}
      {%- do changes.append(['schedule', state.old_schedule, 'CALCULATED']) -%}
    {%- endif -%}
    {%- if state.refresh_mode_changed -%}
      {%- do changes.append(['refresh_mode', state.old_refresh_mode, cfg.refresh_mode]) -%}
    {%- endif -%}
    {%- if cfg.status is not none and state.status_changed -%}
      {%- do changes.append(['status', state.old_status, cfg.status]) -%}
    {%- endif -%}
    {%- set index_changes = dbt_pgstream._pgstream_index_changes(relation, cfg, state, false) -%}
    {%- if index_changes.sql -%}
      {%- do changes.append(['indexes', none, dbt_pgstream._pgstream_describe_index_changes(
          index_changes)]) -%}
    {%- endif -%}
    {#- on_configuration_change governs configuration differences only: what forces a replace
        (full refresh, storage missing, upstream replaced, source column dropped) always acts -#}
    {%- if cfg.on_configuration_change != 'apply' and reasons == config_reasons
          and (config_reasons or changes) -%}
      {%- set differences = config_reasons
          + dbt_pgstream._pgstream_describe_changes(changes) -%}
      {{ return(dbt_pgstream._pgstream_configuration_change_plan(relation, cfg, state,
                                                                 differences)) }}
    {%- endif -%}
    {%- if reasons | length > 0 -%}
      {%- set changes = [] -%}
    {%- endif -%}
  {%- endif -%}

  {%- if state.relation_kind is none and not state.is_stream_table -%}
    {%- set action = 'created' -%}
    {%- set message = 'created' -%}
  {%- elif reasons | length > 0 -%}
    {%- set action = 'replaced' -%}
    {%- set message = 'replaced (' ~ reasons | join(', ') ~ ')' -%}
  {%- elif changes | length > 0 -%}
    {%- set action = 'altered' -%}
    {%- set message = 'altered ('
        ~ dbt_pgstream._pgstream_describe_changes(changes) | join(', ') ~ ')' -%}
  {%- else -%}
    {{ return({'action': 'unchanged', 'message': 'unchanged', 'sql': '',
               'post': dbt_pgstream._pgstream_post_sql(relation, cfg, state, false)}) }}
  {%- endif -%}

  {%- set statements = [dbt_pgstream._pgstream_lock_sql(relation),
                        dbt_pgstream._pgstream_reset_acted_sql()] -%}
  {%- set calls_api = action != 'altered' -%}
  {%- if action == 'altered' -%}
    {%- set alter_args = {} -%}
    {%- set alter_options = {} -%}
    {%- for change in changes if change[0] != 'indexes' -%}
      {%- if change[0] in cfg.options -%}
        {%- do alter_options.update({change[0]: cfg.options[change[0]]}) -%}
      {%- else -%}
        {%- do alter_args.update({change[0]: change[2]}) -%}
      {%- endif -%}
    {%- endfor -%}
    {%- set query_altered = 'query' in alter_args -%}
    {%- if alter_args or alter_options -%}
      {%- set calls_api = true -%}
      {#- re-checked under the lock: a concurrent run that applied the same changes first
          leaves nothing to do, and this run reports "unchanged" -#}
      {%- do statements.append(dbt_pgstream.alter_stream_table(relation,
          schedule=alter_args.get('schedule'), refresh_mode=alter_args.get('refresh_mode'),
          status=alter_args.get('status'), query=query if query_altered else none,
          options=alter_options)
          ~ '\n  AND ' ~ dbt_pgstream._pgstream_sql_alter_needed(query, cfg, alter_args,
                                                                 alter_options)) -%}
      {%- if query_altered and engine.unique_row_id_for_counted -%}
        {%- do statements.append(dbt_pgstream._pgstream_unique_row_id_sql(relation)) -%}
      {%- endif -%}
      {%- if engine.pg_stream_01 and alter_args.get('refresh_mode') == 'DIFFERENTIAL' -%}
        {%- do statements.append(dbt_pgstream._pgstream_assert_no_shared_differential_sql(
            relation)) -%}
      {%- endif -%}
    {%- endif -%}
  {%- else -%}
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
    {%- if action == 'replaced' -%}
      {%- set condition = dbt_pgstream._pgstream_sql_needs_replace(query, cfg.schedule,
                                                                   full_refresh,
                                                                   options=cfg.options) -%}
      {%- if engine.pg_stream_01 and state.upstream_replaced -%}
        {%- do statements.append(dbt_pgstream._pgstream_drop_storage_sql(relation, condition)) -%}
      {%- else -%}
        {#- cascade: where the engine refuses to drop a stream table others read (pg_trickle),
            they go with it; their models create them again when they run -#}
        {%- do statements.append(dbt_pgstream.drop_stream_table(relation, condition=condition,
                                                                 cascade=true)) -%}
      {%- endif -%}
      {%- if state.is_stream_table and state.relation_kind is not none
            and not state.storage_is_relation -%}
        {#- the plain relation standing there (its catalog row was dropped just above) -#}
        {%- do statements.append(dbt_pgstream._pgstream_drop_plain_relation_sql(relation)) -%}
      {%- endif -%}
    {%- endif -%}
    {%- do statements.append(dbt_pgstream.create_stream_table(
        relation, query, cfg.schedule, cfg.refresh_mode, cfg.initialize, cfg.options)) -%}
    {%- if engine.pg_stream_01 and cfg.refresh_mode == 'DIFFERENTIAL' -%}
      {%- do statements.append(dbt_pgstream._pgstream_assert_no_shared_differential_sql(
          relation)) -%}
    {%- endif -%}
    {%- if engine.unique_row_id_for_counted -%}
      {%- do statements.append(dbt_pgstream._pgstream_unique_row_id_sql(relation)) -%}
    {%- endif -%}
    {%- if action == 'replaced' and state.upstream_replaced
          and engine.repair_after_source_recreated -%}
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
  {%- endif -%}

  {#- indexes, comments, grants: in the same statement (transaction), before the last SELECT -#}
  {%- set post = dbt_pgstream._pgstream_post_sql(relation, cfg, state, action != 'altered') -%}
  {%- if action == 'altered' and 'query' in alter_args -%}
    {#- pg_trickle rebuilds the storage table (a new oid, without grants, indexes or comments)
        when a column's type changes incompatibly: apply them as for a new table too, each
        statement being a no-op where the table kept them -#}
    {%- for statement in dbt_pgstream._pgstream_post_sql(relation, cfg, state, true)
          if statement not in post -%}
      {%- do post.append(statement) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set statements = statements + post -%}
  {#- Last: did THIS statement call the API? false = a concurrent run that held the lock first
      already deployed this definition, and every guarded step above was a no-op. Each guarded
      call sets a transaction-local marker when it runs (the catalog row's xmin cannot tell: a
      real engine may write the row in a subtransaction). (An alter of indexes only calls no API
      function: nothing to ask.) -#}
  {%- if calls_api -%}
  {%- do statements.append(dbt_pgstream._pgstream_acted_sql()) -%}
  {%- endif -%}

  {{ return({'action': action, 'message': message,
             'sql': '-- dbt_pgstream: ' ~ message ~ '\n' ~ statements | join(';\n') ~ ';\n',
             'dropped_with_it': state.dependent_stream_tables
                                if action == 'replaced' and engine.drop_needs_cascade
                                else []}) }}
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
