{#- dbt run-operation drop_all_stream_tables
    Drops every stream table the project's stream_table models define (honouring aliases, custom
    schemas and the stream_table_name / stream_table_schema overrides), downstream stream tables
    first, in one transaction. Models whose stream table does not exist are skipped. -#}
{% macro drop_all_stream_tables() -%}
  {{ return(adapter.dispatch('drop_all_stream_tables', 'dbt_pgstream')()) }}
{%- endmacro %}

{% macro default__drop_all_stream_tables() -%}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set relations = [] -%}
  {%- for node in dbt_pgstream._pgstream_stream_table_nodes() -%}
    {%- do relations.append(dbt_pgstream._pgstream_node_relation(node)) -%}
  {%- endfor -%}
  {%- if relations | length == 0 -%}
    {{ log('dbt_pgstream: no stream_table models in this project: nothing to drop', info=True) }}
    {{ return('') }}
  {%- endif -%}

  {#- Which of them exist, ordered downstream first: depth = longest chain of stream tables it
      reads from, dropped deepest first. Ordinals come back, not names (agate would retype). -#}
  {%- call statement('pgstream_drop_all_lookup', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    WITH RECURSIVE wanted (ordinal, schema_name, table_name) AS (
        VALUES
        {%- for relation in relations %}
        ({{ loop.index0 }}, {{ lit(relation.schema) }}, {{ lit(relation.identifier) }})
        {{- ',' if not loop.last }}
        {%- endfor %}
    ),
    {{ dbt_pgstream._pgstream_depth_ctes() }}
    SELECT wanted.ordinal, max(depth.level) AS level
    FROM wanted
    JOIN {{ e.stream_tables }} AS st
        ON st.{{ e.st_schema }} = wanted.schema_name AND st.{{ e.st_name }} = wanted.table_name
    JOIN depth ON depth.st_id = st.{{ e.id }}
    GROUP BY wanted.ordinal
    ORDER BY max(depth.level) DESC, wanted.ordinal
  {%- endcall -%}
  {%- set rows = load_result('pgstream_drop_all_lookup').table.rows -%}
  {%- if rows | length == 0 -%}
    {%- do adapter.commit() -%}
    {{ log('dbt_pgstream: none of the ' ~ relations | length
           ~ ' stream_table models has a stream table: nothing to drop', info=True) }}
    {{ return('') }}
  {%- endif -%}

  {%- set to_drop = [] -%}
  {%- for row in rows -%}
    {%- do to_drop.append(relations[row[0] | int]) -%}
  {%- endfor -%}
  {%- call statement('pgstream_drop_all', auto_begin=True) -%}
    {%- for relation in to_drop %}
    {{ dbt_pgstream.drop_stream_table(relation) }};
    {%- endfor %}
  {%- endcall -%}
  {%- do adapter.commit() -%}
  {%- for relation in to_drop -%}
    {%- do adapter.cache_dropped(relation) -%}
    {{ log('dbt_pgstream: ' ~ relation.schema ~ '.' ~ relation.identifier ~ ': dropped',
           info=True) }}
  {%- endfor -%}
  {{ log('dbt_pgstream: dropped ' ~ to_drop | length ~ ' stream table(s)', info=True) }}
{%- endmacro %}
