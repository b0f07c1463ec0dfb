{#- Private: a schema or table name as PostgreSQL sees it under the project's quoting config.
    With quoting false for `part` ('schema' or 'identifier'), dbt renders the name unquoted and
    PostgreSQL folds it to lower case (ASCII letters only, as PostgreSQL does in UTF-8), so
    alias 'QUpper' designates table qupper; the stream table must be created, looked up and
    refreshed under that folded name. `quoting`: a quote policy (dict or Relation.quote_policy)
    that decides, else the node's `quoting` config, else the project's (quoting:). -#}
{% macro _pgstream_folded_name(name, part, quoting=none) %}
  {%- if name is none -%}{{ return(name) }}{%- endif -%}
  {%- set quoted = none -%}
  {%- if quoting is mapping -%}
    {%- set quoted = quoting.get(part) -%}
  {%- elif quoting is not none -%}
    {%- set quoted = quoting[part] -%}
  {%- endif -%}
  {%- if quoted is none -%}
    {%- set quoted = adapter.quote_as_configured('x', part) != 'x' -%}
  {%- endif -%}
  {%- if quoted -%}{{ return(name) }}{%- endif -%}
  {%- set fold = {} -%}
  {%- for code in range(65, 91) -%}{%- do fold.update({code: code + 32}) -%}{%- endfor -%}
  {{ return(name.translate(fold)) }}
{% endmacro %}


{#- Private: [schema, identifier] of `relation` as PostgreSQL names them: a relation rendered
    unquoted (quote_policy false, e.g. `this` or ref() under `quoting: {identifier: false}`)
    designates the lower-cased name; one quoted, exactly its name. -#}
{% macro _pgstream_pg_names(relation) %}
  {%- set policy = relation.quote_policy if relation.quote_policy is defined else none -%}
  {%- if policy is none -%}{{ return([relation.schema, relation.identifier]) }}{%- endif -%}
  {{ return([dbt_pgstream._pgstream_folded_name(relation.schema, 'schema', policy),
             dbt_pgstream._pgstream_folded_name(relation.identifier, 'identifier', policy)]) }}
{% endmacro %}


{#- Private: [schema, name] a stream_table model deploys to, as PostgreSQL names them: its
    stream_table_schema / stream_table_name config when set (none = unset), else dbt's resolved
    `schema` and `identifier` (alias and custom schema applied), folded under `quoting`
    (_pgstream_folded_name). Shared by the materialization (from its config) and the operations
    and generic tests (from the model's graph node), so both resolve a model to one relation.
    An empty string, or a value that is not a string, is a compile error naming the model, the
    key and the value.
    Args: model_name (text), node_config (the model's config: `config` or node.config),
    identifier, schema (text), quoting (a quote policy, as _pgstream_folded_name takes). -#}
{% macro _pgstream_deploy_names(model_name, node_config, identifier, schema, quoting) %}
  {%- set names = [] -%}
  {%- for key, default, part in [('stream_table_schema', schema, 'schema'),
                                 ('stream_table_name', identifier, 'identifier')] -%}
    {%- set raw = node_config.get(key, none) -%}
    {%- if raw is not none and not (raw is string and raw | length > 0) -%}
      {{ exceptions.raise_compiler_error("dbt_pgstream: invalid config for stream_table model '"
          ~ model_name ~ "': " ~ key ~ "=" ~ dbt_pgstream._pgstream_show(raw)
          ~ " is not allowed; expected a non-empty "
          ~ ('schema name' if part == 'schema' else 'table name')
          ~ " (prefer dbt's own `" ~ ('schema' if part == 'schema' else 'alias') ~ "` config)") }}
    {%- endif -%}
    {%- do names.append(dbt_pgstream._pgstream_folded_name(
        raw if raw is not none else default, part, quoting)) -%}
  {%- endfor -%}
  {{ return(names) }}
{% endmacro %}
