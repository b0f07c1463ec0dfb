{#- Private: the `indexes` config of a stream_table model, as for dbt-postgres tables (columns,
    unique, type). dbt_pgstream manages only the indexes it names itself: `pgs_idx_` followed by
    the md5 of the table name, the columns, unique and the type. That name is deterministic (dbt's
    own index names carry a timestamp), so a later run knows which indexes are its own: it creates
    the configured ones that are missing and drops its own that are no longer configured. The
    engine's unique index on __pgs_row_id and indexes created by hand (any other name) are never
    touched. -#}

{% macro _pgstream_indexes_config(table_name) %}
  {%- set raw = config.get('indexes', none) -%}
  {%- set allowed_types = ['btree', 'hash', 'gist', 'spgist', 'gin', 'brin'] -%}
  {%- set allowed = "expected a list of {columns: [...], unique: true|false, type: "
      ~ allowed_types | join('|') ~ "}, as for dbt-postgres tables" -%}
  {%- if raw is none -%}{{ return([]) }}{%- endif -%}
  {%- if raw is string or raw is mapping or raw is not iterable -%}
    {%- do dbt_pgstream._pgstream_config_error('indexes', raw, allowed) -%}
  {%- endif -%}
  {%- set indexes = [] -%}
  {%- for raw_index in raw -%}
    {%- if raw_index is not mapping or not raw_index.get('columns')
          or raw_index.get('columns') is string -%}
      {%- do dbt_pgstream._pgstream_config_error('indexes', raw, allowed) -%}
    {%- endif -%}
    {%- set parsed = adapter.parse_index(raw_index) -%}
    {%- set index_type = (parsed.type or 'btree') | string | lower -%}
    {%- if index_type not in allowed_types -%}
      {%- do dbt_pgstream._pgstream_config_error('indexes', raw, allowed) -%}
    {%- endif -%}
    {%- set unique = parsed.unique is sameas true -%}
    {%- set columns = parsed.columns | list -%}
    {%- set key = table_name ~ '|' ~ columns | join(',') ~ '|' ~ unique ~ '|' ~ index_type -%}
    {%- do indexes.append({
        'name': 'pgs_idx_' ~ local_md5(key),
        'columns': columns,
        'unique': unique,
        'type': index_type,
        'described': ('unique ' if unique else '') ~ index_type
                     ~ ' (' ~ columns | join(', ') ~ ')',
    }) -%}
  {%- endfor -%}
  {{ return(indexes) }}
{% endmacro %}


{#- Look-up column: a JSON array of the names of the indexes dbt_pgstream manages on `rel`. -#}
{% macro _pgstream_sql_managed_indexes(alias='rel') -%}
  (SELECT pg_catalog.json_agg(ic.relname::text ORDER BY ic.relname)::text
   FROM pg_catalog.pg_index AS ix JOIN pg_catalog.pg_class AS ic ON ic.oid = ix.indexrelid
   WHERE ix.indrelid = {{ alias }}.oid AND pg_catalog.left(ic.relname::text, 8) = 'pgs_idx_')
{%- endmacro %}


{#- What to do to the managed indexes. `rebuilt`: the table is (re)created, so every configured
    index is created and nothing dropped. Returns {create: [index], drop: [name], sql: [...]} -#}
{% macro _pgstream_index_changes(relation, cfg, state, rebuilt) %}
  {%- set ident = dbt_pgstream._pgstream_ident -%}
  {%- set existing = [] if rebuilt else state.managed_indexes -%}
  {%- set wanted = cfg.indexes | map(attribute='name') | list -%}
  {%- set result = {'create': [], 'drop': [], 'sql': []} -%}
  {%- for index in cfg.indexes if index.name not in existing -%}
    {%- do result.create.append(index) -%}
    {%- do result.sql.append('CREATE ' ~ ('UNIQUE ' if index.unique else '')
        ~ 'INDEX IF NOT EXISTS ' ~ ident(index.name) ~ ' ON ' ~ ident(relation.schema) ~ '.'
        ~ ident(relation.identifier) ~ ' USING ' ~ index.type
        ~ ' (' ~ index.columns | join(', ') ~ ')') -%}
  {%- endfor -%}
  {%- for name in existing if name not in wanted -%}
    {%- do result.drop.append(name) -%}
    {%- do result.sql.append('DROP INDEX IF EXISTS ' ~ ident(relation.schema) ~ '.' ~ ident(name)) -%}
  {%- endfor -%}
  {{ return(result) }}
{% endmacro %}
