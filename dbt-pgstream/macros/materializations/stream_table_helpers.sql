{#- Private helpers of the stream_table materialization (see stream_table.sql). -#}

{#- What runs after the create / alter / replace in the same statement, or alone on a run that
    leaves the stream table in place when something differs: managed indexes (unless `indexes`
    is false: a configuration change, left alone by on_configuration_change 'continue'),
    persisted docs, grants. `rebuilt`: the table is new (created or replaced), so everything
    configured is applied. Returns a list of SQL statements. -#}
{% macro _pgstream_post_sql(relation, cfg, state, rebuilt, indexes=true) %}
  {{ return((dbt_pgstream._pgstream_index_changes(relation, cfg, state, rebuilt).sql
             if indexes else [])
            + dbt_pgstream._pgstream_docs_sql(relation, state, rebuilt)
            + dbt_pgstream._pgstream_grants_sql(relation, state, rebuilt)) }}
{% endmacro %}


{#- ['+unique btree (customer_id)', '-pgs_idx_...'] of an index change, joined by spaces. -#}
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


{#- The adapter_response code of a run (run_results.json): CREATE, ALTER, REPLACE, NO-OP, SKIP. -#}
{% macro _pgstream_result_code(action) %}
  {{ return({'created': 'CREATE', 'altered': 'ALTER', 'replaced': 'REPLACE',
             'unchanged': 'NO-OP', 'continue': 'NO-OP', 'skipped': 'SKIP'}[action]) }}
{% endmacro %}


{#- `dbt run --empty` (dbt >= 1.8): refs are rendered as `(select * from x where false limit 0)`,
    a query pg_stream rejects (LIMIT) and that would define a stream table empty forever. So an
    --empty run creates, alters and replaces nothing: it only checks that the model's SQL runs
    (one `... LIMIT 0` query, after the contract check when the contract is enforced) and reports
    `skipped (--empty)`. An existing stream table is left exactly as it is. -#}
{% macro _pgstream_is_empty_run() %}
  {{ return(flags.EMPTY is sameas true) }}
{% endmacro %}

{#- Private: checks the model's SQL (one `... LIMIT 0` query) and returns the run's message. -#}
{% macro _pgstream_empty_run_check(query, contract_checked) %}
  {#- run even after a contract check: its queries open no transaction, and the materialization
      commits one -#}
  {%- call statement('pgstream_empty_check') -%}
    SELECT * FROM (
{{ query }}
    ) AS dbt_pgstream_empty_check LIMIT 0
  {%- endcall -%}
  {{ return('skipped (--empty: the model SQL was checked; no stream table is created or '
            ~ 'changed by an --empty run)') }}
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


{#- Private: after a replace of `relation`, the warning about the stream tables that read it
    (`readers`: [[schema, name], ...]) and that this invocation does not rebuild (their model is
    not selected, or not in the project): pg_trickle dropped them with it, the other engines left
    them reading a dropped relation, which they cannot refresh; and the command that rebuilds
    them. Returns none when every reader's model runs later in this invocation, else a dict:
    warning (the full text, for the log) and response (a shorter one the materialization appends
    to the model's adapter response message, so run_results.json carries it too). -#}
{% macro _pgstream_readers_left_warning(relation, readers) %}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set selected = selected_resources if selected_resources is defined else [] -%}
  {%- set by_relation = {} -%}
  {%- for node in dbt_pgstream._pgstream_stream_table_nodes() -%}
    {%- set node_relation = dbt_pgstream._pgstream_node_relation(node) -%}
    {%- do by_relation.update({node_relation.schema ~ '.' ~ node_relation.identifier: node}) -%}
  {%- endfor -%}
  {%- set left = [] -%}
  {%- set models = [] -%}
  {%- for schema, name in readers -%}
    {%- set node = by_relation.get(schema ~ '.' ~ name) -%}
    {%- if node is none or node.unique_id not in selected -%}
      {%- do left.append((node.name ~ ' (' if node is not none else '') ~ schema ~ '.' ~ name
                         ~ (')' if node is not none else '')) -%}
      {%- if node is not none -%}{%- do models.append(node.name ~ '+') -%}{%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not left -%}{{ return(none) }}{%- endif -%}
  {%- set fate = 'were dropped with it' if e.drop_needs_cascade
                 else 'now read a dropped relation' -%}
  {%- set command = 'dbt run --select ' ~ models | join(' ') if models else 'dbt run' -%}
  {{ return({
      'warning': 'dbt_pgstream: ' ~ model.name ~ ' (' ~ relation.schema ~ '.'
        ~ relation.identifier ~ ') was replaced; ' ~ left | length ~ ' stream table(s) reading '
        ~ 'it are not rebuilt by this run and ' ~ (fate ~ ': ' if e.drop_needs_cascade else
        fate ~ ', so they cannot be refreshed: ') ~ left | join(', ') ~ '. Rebuild them: '
        ~ command ~ '.',
      'response': 'WARNING: ' ~ left | length ~ ' stream table(s) reading it ' ~ fate ~ ' ('
        ~ left | join(', ') ~ '); rebuild them: ' ~ command}) }}
{% endmacro %}
