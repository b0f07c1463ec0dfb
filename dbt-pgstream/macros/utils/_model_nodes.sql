{#- Private: the relation a stream_table model deploys to, from its graph node (dbt has already
    applied alias and custom-schema resolution to node.alias / node.schema), with the names
    PostgreSQL gives them under the quoting config (_pgstream_folded_name). -#}
{% macro _pgstream_node_relation(node) %}
  {%- set schema, name = dbt_pgstream._pgstream_deploy_names(node.name, node.config, node.alias,
      node.schema, node.config.get('quoting') or {}) -%}
  {{ return(api.Relation.create(database=node.database, schema=schema, identifier=name,
                                type='table')) }}
{% endmacro %}


{#- Private: the stream_table model nodes of the project (every package), in the order of the
    manifest's nodes (not a dependency order). -#}
{% macro _pgstream_stream_table_nodes() %}
  {%- set nodes = [] -%}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and node.config.materialized == 'stream_table' -%}
      {%- do nodes.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(nodes) }}
{% endmacro %}


{#- Private: the model node `model_name` designates, resolved as dbt's ref() does: a model name
    (for a versioned model, its latest version), or one version of a versioned model written
    'name.v2' or 'name_v2' (as `dbt ls --select` accepts). The root project's first, if two
    packages define it. Compile error when it is missing or not a stream_table model. -#}
{% macro _pgstream_model_node(model_name) %}
  {%- set found = [] -%}
  {%- for node in dbt_pgstream._pgstream_named_model_nodes(model_name) -%}
    {%- if node.package_name == project_name -%}
      {%- do found.insert(0, node) -%}
    {%- else -%}
      {%- do found.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if found | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: no model named '" ~ model_name ~ "' in this project") }}
  {%- endif -%}
  {%- if found[0].config.materialized != 'stream_table' -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: model '" ~ model_name ~ "' is materialized as '"
        ~ found[0].config.materialized ~ "', not 'stream_table'") }}
  {%- endif -%}
  {{ return(found[0]) }}
{% endmacro %}


{#- Private: 'v' ~ the version of a versioned model node ('v2'), none for an unversioned one. -#}
{% macro _pgstream_version_tag(node) %}
  {%- if node.get('version') is none -%}{{ return(none) }}{%- endif -%}
  {{ return('v' ~ node.version) }}
{% endmacro %}


{#- Private: is the versioned model node the latest version (latest_version, or the greatest
    version when none is declared)? -#}
{% macro _pgstream_is_latest_version(node) %}
  {%- if node.get('version') is none -%}{{ return(false) }}{%- endif -%}
  {%- if node.get('latest_version') is not none -%}
    {{ return(node.version | string == node.latest_version | string) }}
  {%- endif -%}
  {%- for other in graph.nodes.values() -%}
    {%- if other.resource_type == 'model' and other.name == node.name
          and other.package_name == node.package_name and other.get('version') is not none
          and dbt_pgstream._pgstream_version_order(other.version, node.version) > 0 -%}
      {{ return(false) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(true) }}
{% endmacro %}


{#- Private: -1, 0 or 1 as version a sorts before, with or after version b (numerically when
    both are numbers, as dbt compares them; else as text). -#}
{% macro _pgstream_version_order(a, b) %}
  {%- set number = modules.re.compile('^[0-9]+(\\.[0-9]+)?$') -%}
  {%- if number.match(a | string) and number.match(b | string) -%}
    {%- set x, y = a | string | float, b | string | float -%}
  {%- else -%}
    {%- set x, y = a | string, b | string -%}
  {%- endif -%}
  {{ return(-1 if x < y else (1 if x > y else 0)) }}
{% endmacro %}


{#- Private: the model nodes (every package) that `name` designates as ref() would: the nodes
    called `name` (the latest version only, for a versioned model), else the version
    'name.vN' / 'name_vN' of a versioned model. -#}
{% macro _pgstream_named_model_nodes(name) %}
  {%- set named = [] -%}
  {%- set versions = [] -%}
  {%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
    {%- set tag = dbt_pgstream._pgstream_version_tag(node) -%}
    {%- if node.name == name and (tag is none or dbt_pgstream._pgstream_is_latest_version(node)) -%}
      {%- do named.append(node) -%}
    {%- elif tag is not none and name in [node.name ~ '.' ~ tag, node.name ~ '_' ~ tag] -%}
      {%- do versions.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(named if named else versions) }}
{% endmacro %}


{#- Private: the relation a generic test on `model` must check. dbt passes the model's own
    relation; a stream_table model with stream_table_name / stream_table_schema overrides deploys
    elsewhere, so its stream table is looked up from the node. Names are those PostgreSQL gives
    the relation under the quoting config (_pgstream_folded_name). Sources pass through. -#}
{% macro _pgstream_tested_relation(model) %}
  {%- if execute -%}
    {%- for node in dbt_pgstream._pgstream_stream_table_nodes() -%}
      {%- if node.schema == model.schema and node.alias == model.identifier
            and (node.config.get('stream_table_name') is not none
                 or node.config.get('stream_table_schema') is not none) -%}
        {{ return(dbt_pgstream._pgstream_node_relation(node)) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {%- if model.quote_policy is defined and model.identifier is not none -%}
    {%- set schema = dbt_pgstream._pgstream_folded_name(model.schema, 'schema',
                                                        model.quote_policy) -%}
    {%- set name = dbt_pgstream._pgstream_folded_name(model.identifier, 'identifier',
                                                      model.quote_policy) -%}
    {%- if schema != model.schema or name != model.identifier -%}
      {{ return(api.Relation.create(database=model.database, schema=schema, identifier=name,
                                    type=model.type)) }}
    {%- endif -%}
  {%- endif -%}
  {{ return(model) }}
{% endmacro %}
