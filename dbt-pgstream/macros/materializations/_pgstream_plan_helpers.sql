{#- Private helpers of the stream_table materialization's plan (see stream_table.sql). -#}

{#- What runs after the create / alter / replace in the same statement, or alone on an unchanged
    run when something differs: managed indexes, persisted docs, grants. `rebuilt`: the table is
    new (created or replaced), so everything configured is applied. -#}
{% macro _pgstream_post_sql(relation, cfg, state, rebuilt) %}
  {{ return(dbt_pgstream._pgstream_index_changes(relation, cfg, state, rebuilt).sql
            + dbt_pgstream._pgstream_docs_sql(relation, state, rebuilt)
            + dbt_pgstream._pgstream_grants_sql(relation, state, rebuilt)) }}
{% endmacro %}


{#- ['schedule 1m -> 5m', 'indexes +btree (customer_id)', ...] -#}
{% macro _pgstream_describe_changes(changes) %}
  {%- set described = [] -%}
  {%- for change in changes -%}
    {%- if change[0] == 'indexes' -%}
      {%- do described.append('indexes ' ~ change[2]) -%}
    {%- elif change[0] == 'query' -%}
      {%- do described.append('query changed') -%}
    {%- else -%}
      {%- do described.append(change[0] ~ ' ' ~ change[1] ~ ' -> ' ~ change[2]) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(described) }}
{% endmacro %}


{% macro _pgstream_describe_index_changes(index_changes) %}
  {%- set parts = [] -%}
  {%- for index in index_changes.create -%}
    {%- do parts.append('+' ~ index.described) -%}
  {%- endfor -%}
  {%- for name in index_changes.drop -%}
    {%- do parts.append('-' ~ name) -%}
  {%- endfor -%}
  {{ return(parts | join(' ')) }}
{% endmacro %}


{#- on_configuration_change = 'fail': stop with what differs; 'continue': warn and leave the
    stream table as it is (grants and docs are still reconciled, as dbt does for materialized
    views). -#}
{% macro _pgstream_configuration_change_plan(relation, cfg, state, differences) %}
  {%- set where = "stream_table model '" ~ model.name ~ "' (" ~ relation.schema ~ '.'
      ~ relation.identifier ~ ")" -%}
  {%- if cfg.on_configuration_change == 'fail' -%}
    {{ exceptions.raise_compiler_error("dbt_pgstream: " ~ where
        ~ ": configuration changes found and on_configuration_change='fail': "
        ~ differences | join(', ')
        ~ ". Nothing was changed. Set on_configuration_change='apply' (or run with "
        ~ "--full-refresh) to apply them.") }}
  {%- endif -%}
  {%- do exceptions.warn("dbt_pgstream: " ~ where
      ~ ": configuration changes found and on_configuration_change='continue', not applied: "
      ~ differences | join(', ')) -%}
  {{ return({'action': 'unchanged',
             'message': 'unchanged (on_configuration_change=continue: '
                        ~ differences | join(', ') ~ ')',
             'sql': '', 'post': dbt_pgstream._pgstream_post_sql(relation, cfg, state, false)
                                | reject('in', dbt_pgstream._pgstream_index_changes(
                                    relation, cfg, state, false).sql) | list}) }}
{% endmacro %}


{#- The adapter_response code of a run (run_results.json): CREATE, ALTER, REPLACE, NO-OP, SKIP. -#}
{% macro _pgstream_result_code(action) %}
  {{ return({'created': 'CREATE', 'altered': 'ALTER', 'replaced': 'REPLACE',
             'unchanged': 'NO-OP', 'skipped': 'SKIP'}[action]) }}
{% endmacro %}


{#- `dbt run --empty` (dbt >= 1.8): refs are rendered as `(select * from x where false limit 0)`,
    a query pg_stream rejects (LIMIT) and that would define a stream table empty forever. So an
    --empty run creates, alters and replaces nothing: it only checks that the model's SQL runs
    (one `... LIMIT 0` query, after the contract check when the contract is enforced) and reports
    `skipped (--empty)`. An existing stream table is left exactly as it is. -#}
{% macro _pgstream_is_empty_run() %}
  {{ return(flags.EMPTY is sameas true) }}
{% endmacro %}

{% macro _pgstream_empty_run_check(query, contract_checked) %}
  {#- run even after a contract check: its queries open no transaction, and the materialization
      commits one -#}
  {%- call statement('pgstream_empty_check') -%}
    SELECT * FROM (
{{ query }}
    ) AS dbt_pgstream_empty_check LIMIT 0
  {%- endcall -%}
  {{ return({'action': 'skipped', 'sql': '', 'post': [],
             'message': 'skipped (--empty: the model SQL was checked; no stream table is '
                        ~ 'created or changed by an --empty run)'}) }}
{% endmacro %}


{#- Private: predicate over the catalog row `st`: some change an alter is about to apply is still
    to be applied. The alter is re-checked with it under the model lock, so of two runs applying
    the same change at once, the second calls nothing and reports "unchanged". -#}
{% macro _pgstream_sql_alter_needed(query, cfg, alter_args, alter_options) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set parts = [] -%}
  {%- if 'query' in alter_args -%}
    {%- do parts.append(dbt_pgstream._pgstream_sql_query_changed(query)) -%}
  {%- endif -%}
  {%- if 'schedule' in alter_args -%}
    {%- do parts.append('st.schedule IS DISTINCT FROM ' ~ lit(cfg.schedule)) -%}
  {%- endif -%}
  {%- if 'refresh_mode' in alter_args -%}
    {%- do parts.append(dbt_pgstream._pgstream_sql_refresh_mode_differs(cfg.refresh_mode)) -%}
  {%- endif -%}
  {%- if 'status' in alter_args -%}
    {%- do parts.append('st.status IS DISTINCT FROM ' ~ lit(cfg.status)) -%}
  {%- endif -%}
  {%- for key, value in alter_options.items() -%}
    {%- do parts.append(dbt_pgstream._pgstream_sql_option_differs(key, value)) -%}
  {%- endfor -%}
  ({{ parts | join('\n       OR ') if parts else 'true' }})
{%- endmacro %}


{#- Private: an option's value as the run's messages show it (true / false in lower case). -#}
{% macro _pgstream_option_text(value) -%}
  {%- if value is sameas true or value is sameas false -%}
    {{- 'true' if value else 'false' -}}
  {%- else -%}
    {{- value -}}
  {%- endif -%}
{%- endmacro %}
