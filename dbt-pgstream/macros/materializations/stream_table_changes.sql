{#- Private: what differs between the model and what the database holds, from the look-up
    `state` (_pgstream_lookup), as a list of changes, in the order the run's messages list them.
    Each change is a dict:
      what           'relation', 'full_refresh', 'query', 'storage', 'upstream', 'source_column',
                     'schedule', 'refresh_mode', 'status', 'indexes', or a pg_trickle option key
      old, new       the values (text), where there are two
      text           how the run's message says it ('schedule 1m -> 5m', 'query changed', ...)
      needs_replace  only a replace applies it (else an alter does, in place)
      configuration  a configuration difference, governed by on_configuration_change (the others
                     - a full refresh, a missing storage table, a dropped upstream relation or
                     source column, a plain relation in the way - always act)
    An empty list: nothing to do (the stream table is as configured) or nothing exists yet
    (state.exists is false: a create). Runs no SQL. -#}
{% macro _pgstream_get_changes(relation, cfg, query, full_refresh, state) %}
  {%- set engine = dbt_pgstream._pgstream_engine() -%}
  {%- set changes = [] -%}
  {%- if state.relation_kind is not none and not state.is_stream_table -%}
    {%- if state.relation_kind not in ['table', 'view', 'materialized view', 'foreign table'] -%}
      {{ exceptions.raise_compiler_error(
          "dbt_pgstream: cannot deploy stream_table model '" ~ model.name ~ "': " ~ relation
          ~ " already exists as a " ~ state.relation_kind ~ ", which dbt_pgstream does not replace") }}
    {%- endif -%}
    {%- do changes.append(dbt_pgstream._pgstream_change('relation', state.relation_kind, none,
        'was a ' ~ state.relation_kind, true, false)) -%}
    {{ return(changes) }}
  {%- endif -%}
  {%- if not state.is_stream_table -%}
    {{ return(changes) }}
  {%- endif -%}

  {#- a plain relation stands where the catalog row points (the model was switched to table or
      view and back, on an engine that keeps the row of a dropped storage table) -#}
  {%- set replaced_relation = state.relation_kind is not none and not state.storage_is_relation -%}
  {%- set replace = [
      ['relation', replaced_relation, 'was a ' ~ state.relation_kind, false],
      ['full_refresh', full_refresh, 'full refresh', false],
      ['query', state.query_changed, 'query changed', true],
      ['storage', state.storage_missing and not replaced_relation, 'storage table missing', false],
      ['upstream', state.upstream_replaced, 'upstream replaced', false],
      ['source_column', state.source_column_dropped, 'source column dropped', false],
      ['schedule', state.schedule_cleared,
       'schedule ' ~ state.old_schedule ~ ' -> CALCULATED', true],
  ] -%}
  {%- for what, found, text, configuration in replace if found -%}
    {%- do changes.append(dbt_pgstream._pgstream_change(what, none, none, text, true,
                                                        configuration)) -%}
  {%- endfor -%}
  {#- the storage's distribution on Citus (_citus.sql) -#}
  {%- do changes.extend(dbt_pgstream._pgstream_citus_changes(cfg, state)) -%}
  {#- pg_trickle's options that only a replace applies -#}
  {%- for key, held in state.option_state.items()
        if held[1] and not dbt_pgstream._pgstream_option_spec(key).alter -%}
    {%- do changes.append(dbt_pgstream._pgstream_option_change(key, held, cfg, true)) -%}
  {%- endfor -%}
  {#- a query change alone is applied in place where the engine's alter can (pg_trickle): the
      stream table keeps its oid, grants and rows. Not when other stream tables read it:
      pg_trickle 0.67's alter leaves the change buffer they read from it with the old columns,
      and their next refresh fails (`column "x" of relation "changes_pgt_2" does not exist`):
      a replace re-creates them (docs/engines.md). -#}
  {%- set replacing = changes | selectattr('needs_replace') | list -%}
  {%- if engine.alter_query and replacing | length == 1 and replacing[0].what == 'query'
        and not state.dependent_stream_tables -%}
    {%- do replacing[0].update({'needs_replace': false}) -%}
  {%- endif -%}

  {#- what an alter applies in place -#}
  {%- if state.schedule_changed and (cfg.schedule is not none or engine.alter_sets_calculated) -%}
    {%- set new_schedule = cfg.schedule if cfg.schedule is not none else 'CALCULATED' -%}
    {%- do changes.append(dbt_pgstream._pgstream_change('schedule', state.old_schedule,
        new_schedule, 'schedule ' ~ state.old_schedule ~ ' -> ' ~ new_schedule, false,
        true)) -%}
  {%- endif -%}
  {%- if state.refresh_mode_changed -%}
    {%- do changes.append(dbt_pgstream._pgstream_change('refresh_mode', state.old_refresh_mode,
        cfg.refresh_mode, 'refresh_mode ' ~ state.old_refresh_mode ~ ' -> ' ~ cfg.refresh_mode,
        false, true)) -%}
  {%- endif -%}
  {%- if cfg.status is not none and state.status_changed -%}
    {%- do changes.append(dbt_pgstream._pgstream_change('status', state.old_status, cfg.status,
        'status ' ~ state.old_status ~ ' -> ' ~ cfg.status, false, true)) -%}
  {%- endif -%}
  {%- for key, held in state.option_state.items()
        if held[1] and dbt_pgstream._pgstream_option_spec(key).alter -%}
    {%- do changes.append(dbt_pgstream._pgstream_option_change(key, held, cfg, false)) -%}
  {%- endfor -%}
  {%- set index_changes = dbt_pgstream._pgstream_index_changes(relation, cfg, state, false) -%}
  {%- if index_changes.sql -%}
    {%- do changes.append(dbt_pgstream._pgstream_change('indexes', none, none, 'indexes '
        ~ dbt_pgstream._pgstream_describe_index_changes(index_changes), false, true)) -%}
  {%- endif -%}
  {{ return(changes) }}
{% endmacro %}


{#- Private: one change (see _pgstream_get_changes). -#}
{% macro _pgstream_change(what, old, new, text, needs_replace, configuration) %}
  {{ return({'what': what, 'old': old, 'new': new, 'text': text,
             'needs_replace': needs_replace, 'configuration': configuration}) }}
{% endmacro %}


{#- Private: the change of pg_trickle option `key`, from its look-up entry `held` ([stored value
    as text, differs]). -#}
{% macro _pgstream_option_change(key, held, cfg, needs_replace) %}
  {%- set old = held[0] if held[0] is not none else 'none' -%}
  {%- set new = dbt_pgstream._pgstream_option_text(cfg.options[key]) -%}
  {{ return(dbt_pgstream._pgstream_change(key, old, new, key ~ ' ' ~ old ~ ' -> ' ~ new,
                                          needs_replace, true)) }}
{% endmacro %}


{#- Private: the action the `changes` call for: 'created' (nothing exists), 'replaced', 'altered',
    'unchanged', or 'continue' (configuration changes left alone: on_configuration_change
    'continue'). on_configuration_change 'fail' stops the model here, as dbt's own materialized
    view does (a fail-fast error), naming what differs; it governs configuration differences
    only: what forces a replace without being one always acts. -#}
{% macro _pgstream_decide(relation, cfg, state, changes) %}
  {%- if state.relation_kind is none and not state.is_stream_table -%}
    {{ return('created') }}
  {%- endif -%}
  {%- if not changes -%}
    {{ return('unchanged') }}
  {%- endif -%}
  {%- set forced = changes | selectattr('needs_replace') | rejectattr('configuration') | list -%}
  {%- if cfg.on_configuration_change != 'apply' and not forced -%}
    {%- set differences = changes | map(attribute='text') | join(', ') -%}
    {%- if cfg.on_configuration_change == 'fail' -%}
      {%- do exceptions.raise_fail_fast_error("dbt_pgstream: stream_table model '" ~ model.name
          ~ "' (" ~ relation.schema ~ '.' ~ relation.identifier ~ "): configuration changes "
          ~ "found and on_configuration_change='fail': " ~ differences ~ ". Nothing was "
          ~ "changed. Set on_configuration_change='apply' (or run with --full-refresh) to "
          ~ "apply them.") -%}
    {%- endif -%}
    {%- do exceptions.warn("dbt_pgstream: stream_table model '" ~ model.name ~ "' ("
        ~ relation.schema ~ '.' ~ relation.identifier ~ "): configuration changes found and "
        ~ "on_configuration_change='continue', not applied: " ~ differences) -%}
    {{ return('continue') }}
  {%- endif -%}
  {{ return('replaced' if changes | selectattr('needs_replace') | list else 'altered') }}
{% endmacro %}


{#- Private: the run's message for `action` and `changes` ('replaced (query changed)'). -#}
{% macro _pgstream_message(action, changes) %}
  {%- if action == 'replaced' -%}
    {%- set shown = changes | selectattr('needs_replace') | map(attribute='text') | list -%}
  {%- else -%}
    {%- set shown = changes | map(attribute='text') | list -%}
  {%- endif -%}
  {%- if action == 'continue' -%}
    {{ return('unchanged (on_configuration_change=continue: ' ~ shown | join(', ') ~ ')') }}
  {%- endif -%}
  {{ return(action ~ (' (' ~ shown | join(', ') ~ ')' if shown else '')) }}
{% endmacro %}
