{#- Private: the relation a stream_table model deploys to, from its graph node (dbt has already
    applied alias and custom-schema resolution to node.alias / node.schema). -#}
{% macro _pgstream_node_relation(node) %}
  {%- set name = node.config.get('stream_table_name') or node.alias -%}
  {%- set schema = node.config.get('stream_table_schema') or node.schema -%}
  {{ return(api.Relation.create(database=node.database, schema=schema, identifier=name,
                                type='table')) }}
{% endmacro %}


{#- Private: the stream_table model nodes of the project (every package), in graph order. -#}
{% macro _pgstream_stream_table_nodes() %}
  {%- set nodes = [] -%}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and node.config.materialized == 'stream_table' -%}
      {%- do nodes.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(nodes) }}
{% endmacro %}


{#- Private: the node of stream_table model `model_name` (the root project's first, if two
    packages define a model of that name). Compile error when it is missing or not a
    stream_table model. -#}
{% macro _pgstream_model_node(model_name) %}
  {%- set found = [] -%}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and node.name == model_name -%}
      {%- if node.package_name == project_name -%}
        {%- do found.insert(0, node) -%}
      {%- else -%}
        {%- do found.append(node) -%}
      {%- endif -%}
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


{#- Private: the relation a generic test on `model` must check. dbt passes the model's own
    relation; a stream_table model with stream_table_name / stream_table_schema overrides deploys
    elsewhere, so its stream table is looked up from the node. Sources pass through. -#}
{% macro _pgstream_tested_relation(model) %}
  {%- if execute -%}
    {%- for node in dbt_pgstream._pgstream_stream_table_nodes() -%}
      {%- if node.schema == model.schema and node.alias == model.identifier
            and (node.config.get('stream_table_name') or node.config.get('stream_table_schema')) -%}
        {{ return(dbt_pgstream._pgstream_node_relation(node)) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(model) }}
{% endmacro %}
