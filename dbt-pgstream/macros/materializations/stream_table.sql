{#-
  The `stream_table` materialization: deploys a model as a pg_stream stream table.

  Shape (like dbt's materialized_view): set up (validate config, resolve the relation); describe
  (ONE catalog look-up: _pgstream_lookup); the configuration changes (_pgstream_get_changes) and
  the action they call for (_pgstream_decide: created / altered / replaced / unchanged /
  continue, or a fail-fast error for on_configuration_change 'fail'); act in ONE statement
  (stream_table_sql.sql); tear down (hooks, commit, cache) and return the relation.

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

  {#-- describe: the contract (only when enforced), --empty (never deploys), else the engine's
       limits and the one catalog look-up --#}
  {%- set contract_checked = dbt_pgstream._pgstream_contract_enforced() -%}
  {%- if contract_checked -%}
    {%- do dbt_pgstream._pgstream_assert_contract(query) -%}
  {%- endif -%}
  {%- set empty_run = dbt_pgstream._pgstream_is_empty_run() -%}
  {%- if empty_run -%}
    {%- set action = 'skipped' -%}
    {%- set message = dbt_pgstream._pgstream_empty_run_check(query, contract_checked) -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_assert_engine_supports(target_relation, cfg, query) -%}
    {%- set state = dbt_pgstream._pgstream_lookup(target_relation, cfg, query) -%}
    {%- if state.orphans or state.orphan_captures -%}
      {#- stream tables (or change capture) left behind by models switched to another
          materialization -#}
      {%- do dbt_pgstream._pgstream_remove_orphans(state.orphans, state.orphan_captures,
          target_relation.schema if state.schema_exists else none) -%}
    {%- endif -%}

    {#-- configuration changes, then the action they call for --#}
    {%- set changes = dbt_pgstream._pgstream_get_changes(target_relation, cfg, query,
                                                         full_refresh, state) -%}
    {%- set action = dbt_pgstream._pgstream_decide(target_relation, cfg, state, changes) -%}
    {%- set message = dbt_pgstream._pgstream_message(action, changes) -%}
  {%- endif -%}

  {#-- act: one statement, or none --#}
  {%- if action in ['created', 'replaced', 'altered'] -%}
    {%- if action == 'created' -%}
      {%- set act_sql = dbt_pgstream._pgstream_get_create_sql(target_relation, cfg, query, state) -%}
    {%- elif action == 'replaced' -%}
      {%- set act_sql = dbt_pgstream._pgstream_get_replace_sql(target_relation, cfg, query,
                                                               full_refresh, state) -%}
    {%- else -%}
      {%- set act_sql = dbt_pgstream._pgstream_get_alter_sql(target_relation, cfg, query, state,
                                                             changes) -%}
    {%- endif -%}
    {%- call statement('main', fetch_result=True) -%}
      -- dbt_pgstream: {{ message }}
      {{ act_sql }}
    {%- endcall -%}
    {%- set acted = load_result('main').table.rows -%}
    {%- if acted | length > 0 and acted[0][0] is sameas false -%}
      {%- set action = 'unchanged' -%}
      {%- set message = 'unchanged (deployed by a concurrent run)' -%}
    {%- endif -%}
    {#- a replace that leaves stream tables reading the dropped relation: warned in the log and
        in the model's adapter response (run_results.json), below -#}
    {%- set readers_left = dbt_pgstream._pgstream_readers_left_warning(target_relation,
        state.dependent_stream_tables)
        if action == 'replaced' and state.dependent_stream_tables else none -%}
    {%- do store_raw_result(name='main',
                            message=message ~ ('; ' ~ readers_left.response if readers_left else ''),
                            code=dbt_pgstream._pgstream_result_code(action), rows_affected=-1) -%}
  {%- else -%}
    {%- call noop_statement('main', message=message,
                            code=dbt_pgstream._pgstream_result_code(action),
                            rows_affected=-1) -%}
      -- dbt_pgstream: {{ target_relation }} {{ action }}: no SQL was executed
    {%- endcall -%}
    {#- grants / comments that differ on a stream table left in place (as dbt does for a
        materialized view with on_configuration_change 'continue': indexes are a configuration
        change, left alone) -#}
    {%- set post = [] if empty_run else dbt_pgstream._pgstream_post_sql(
        target_relation, cfg, state, false, indexes=false) -%}
    {%- if post -%}
      {%- call statement('pgstream_reconcile') -%}
        {{ post | join(';\n') }}
      {%- endcall -%}
      {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
             ~ target_relation.identifier ~ '): reconciled: ' ~ post | join('; '), info=True) }}
    {%- endif -%}
  {%- endif -%}
  {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
         ~ target_relation.identifier ~ '): ' ~ message, info=True) }}
  {%- if action == 'replaced' and state.dependent_stream_tables
        and dbt_pgstream._pgstream_engine().drop_needs_cascade -%}
    {%- set dropped = [] -%}
    {%- for down in state.dependent_stream_tables -%}
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
  {%- if readers_left is defined and readers_left -%}
    {%- do exceptions.warn(readers_left.warning) -%}
  {%- endif %}
  {#-- refresh_on_run: a stream table left in place (unchanged / altered) is refreshed now, so
       what runs after this model (tests, downstream models) sees fresh data --#}
  {%- if cfg.refresh_on_run and action in ['unchanged', 'altered', 'continue'] -%}
    {%- call statement('pgstream_refresh_on_run') -%}
      {{ dbt_pgstream.refresh_stream_table(target_relation) }}
    {%- endcall -%}
    {{ log('dbt_pgstream: ' ~ model.name ~ ' (' ~ target_relation.schema ~ '.'
           ~ target_relation.identifier ~ '): refreshed (refresh_on_run)', info=True) }}
  {%- endif -%}

  {#-- teardown --#}
  {%- if action in ['created', 'replaced'] -%}
    {#- a create may replace a plain relation, a replace drops the old one (CASCADE): forget it
        and its dependents in dbt's relation cache -#}
    {%- do adapter.cache_dropped(target_relation) -%}
  {%- endif -%}
  {#- grants and persist_docs were applied with the act (or reconciled above) from the look-up:
      see macros/utils/_grants_docs.sql -#}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  -- `COMMIT` happens here:
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [] if action == 'skipped' else [target_relation]}) }}

{% endmaterialization %}
