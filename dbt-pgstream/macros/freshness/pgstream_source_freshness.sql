{#- dbt run-operation pgstream_source_freshness --args '{"source_name": "marts.order_totals"}'
    The freshness of one stream table as the engine sees it. Returns (and logs) a dict:
    schema_name, table_name, last_refresh_at (text or none), staleness (text or none),
    staleness_seconds (number or none), stale (true / false; none for a cron or CALCULATED
    schedule, which has no duration to compare with; always true when never refreshed).
    `source_name` is resolved in this order:
      'a.b'  -> table b of dbt source a, if the project has one; else version b of versioned
                model a ('e_ver.v1'); else stream table a.b (schema.table)
      'name' -> the stream_table model `name` (the latest version of a versioned model; 'e_ver_v1'
                is version 1); else the only source table called `name`
    Fails, naming it, when nothing matches or the relation is not a stream table. -#}
{% macro pgstream_source_freshness(source_name) -%}
  {{ return(adapter.dispatch('pgstream_source_freshness', 'dbt_pgstream')(source_name)) }}
{%- endmacro %}

{% macro default__pgstream_source_freshness(source_name) -%}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- set relation = dbt_pgstream._pgstream_resolve_name(source_name) -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- call statement('pgstream_source_freshness', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT row_to_json(f)::text FROM (
        SELECT s.{{ e.st_schema }} AS schema_name, s.{{ e.st_name }} AS table_name,
               to_char(s.last_refresh_at, 'YYYY-MM-DD"T"HH24:MI:SS.USOF') AS last_refresh_at,
               date_trunc('second', s.staleness)::text AS staleness,
               extract(epoch FROM s.staleness)::float8 AS staleness_seconds,
               CASE WHEN NOT s.is_populated OR s.last_refresh_at IS NULL THEN true
                    ELSE s.stale END AS stale
        FROM {{ e.stat }} AS s
        WHERE {{ dbt_pgstream._pgstream_catalog_match(relation, 's') }}
    ) AS f
  {%- endcall -%}
  {%- set rows = load_result('pgstream_source_freshness').table.rows -%}
  {%- do adapter.commit() -%}
  {%- if rows | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: pgstream_source_freshness: '" ~ source_name ~ "' resolves to "
        ~ relation.schema ~ '.' ~ relation.identifier ~ ", which is not a stream table") }}
  {%- endif -%}
  {%- set result = fromjson(rows[0][0]) -%}
  {{ log('dbt_pgstream: ' ~ result.schema_name ~ '.' ~ result.table_name ~ ': last refresh '
         ~ (result.last_refresh_at or 'never') ~ ', staleness ' ~ (result.staleness or '-')
         ~ ', stale: ' ~ ('unknown (no duration schedule)' if result.stale is none
                           else result.stale | lower) ~ '\n' ~ tojson(result), info=True) }}
  {{ return(result) }}
{%- endmacro %}


{#- Private: the relation `name` designates (see pgstream_source_freshness for the order). -#}
{% macro _pgstream_resolve_name(name) %}
  {%- if name is not string or name | trim | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: source_name=" ~ dbt_pgstream._pgstream_show(name) ~ " is not allowed; "
        ~ "expected 'source.table', 'schema.table', or a model or source table name") }}
  {%- endif -%}
  {%- set name = name | trim -%}
  {%- set sources = graph.sources.values() | list -%}
  {%- if '.' in name -%}
    {%- set parts = name.split('.', 1) -%}
    {%- for node in sources -%}
      {%- if node.source_name == parts[0] and node.name == parts[1] -%}
        {{ return(dbt_pgstream._pgstream_source_relation(node)) }}
      {%- endif -%}
    {%- endfor -%}
    {%- if dbt_pgstream._pgstream_named_model_nodes(name) -%}
      {#- one version of a versioned model: 'name.v2' -#}
      {{ return(dbt_pgstream._pgstream_node_relation(dbt_pgstream._pgstream_model_node(name))) }}
    {%- endif -%}
    {{ return(api.Relation.create(schema=parts[0], identifier=parts[1], type='table')) }}
  {%- endif -%}
  {%- if dbt_pgstream._pgstream_named_model_nodes(name) -%}
    {#- a model (the latest version of a versioned one), or 'name_v2' -#}
    {{ return(dbt_pgstream._pgstream_node_relation(dbt_pgstream._pgstream_model_node(name))) }}
  {%- endif -%}
  {%- set found = [] -%}
  {%- for node in sources -%}
    {%- if node.name == name -%}
      {%- do found.append(node) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if found | length == 1 -%}
    {{ return(dbt_pgstream._pgstream_source_relation(found[0])) }}
  {%- elif found | length > 1 -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: source_name='" ~ name ~ "' is ambiguous: " ~ found | length
        ~ " sources have a table of that name; write 'source_name.table_name'") }}
  {%- endif -%}
  {{ exceptions.raise_compiler_error(
      "dbt_pgstream: source_name='" ~ name ~ "' matches no model and no source table of this "
      ~ "project; write 'source_name.table_name' or 'schema.table'") }}
{% endmacro %}


{#- Private: the relation of a source table node, with the names PostgreSQL gives it under the
    source's (else the project's) quoting config. -#}
{% macro _pgstream_source_relation(node) %}
  {%- set quoting = node.get('quoting') or {} -%}
  {{ return(api.Relation.create(database=node.database,
      schema=dbt_pgstream._pgstream_folded_name(node.schema, 'schema', quoting),
      identifier=dbt_pgstream._pgstream_folded_name(node.identifier, 'identifier', quoting),
      type='table')) }}
{% endmacro %}
