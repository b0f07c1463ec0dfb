{#- dbt run-operation refresh --args '{"model_name": "order_totals"}'
    Refreshes the stream table of a stream_table model now (synchronously, in its stored refresh
    mode). The schema and name come from the model (alias, custom schema, overrides). -#}
{% macro refresh(model_name) -%}
  {{ return(adapter.dispatch('refresh', 'dbt_pgstream')(model_name)) }}
{%- endmacro %}

{% macro default__refresh(model_name) -%}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- set relation = dbt_pgstream._pgstream_node_relation(
      dbt_pgstream._pgstream_model_node(model_name)) -%}
  {%- call statement('pgstream_refresh', auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    {{ dbt_pgstream.refresh_stream_table(relation) }}
  {%- endcall -%}
  {%- do adapter.commit() -%}
  {{ log('dbt_pgstream: ' ~ model_name ~ ' (' ~ relation.schema ~ '.' ~ relation.identifier
         ~ '): refreshed', info=True) }}
{%- endmacro %}
