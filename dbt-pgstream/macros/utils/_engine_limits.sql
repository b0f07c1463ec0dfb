{#- Private: what the engine cannot do, refused before any SQL is sent, with one error naming the
    model, the engine and its version, and what to do. Only defects measured on a real engine
    are here (docs/engines.md):
    pg_stream 0.1 and pg_trickle 0.67 (quotes_names false) cast an unquoted
    `schema || '.' || name` to regclass, so a schema or table name that needs quoting (upper
    case, spaces, quotes, dots, anything but lower-case letters, digits, _ and $) cannot be
    used: pg_stream 0.1 creates the stream table but can never refresh or drop it, pg_trickle
    0.67 fails the create ("invalid name syntax", "cross-database references are not
    implemented", or the relation is not found);
    pg_stream 0.1's DIFFERENTIAL mode fails on GROUP BY by position (`GROUP BY 1`: "column "1"
    does not exist", from the index it builds on the GROUP BY columns).
    Args: relation (Relation), cfg (dict from _pgstream_stream_table_config), query (text). -#}
{% macro _pgstream_assert_engine_supports(relation, cfg, query) %}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- do dbt_pgstream._pgstream_assert_engine_has_options(relation, cfg, e) -%}
  {%- do dbt_pgstream._pgstream_citus_assert_supported(relation, cfg, e) -%}{#- _citus.sql -#}
  {%- if e.quotes_names and not e.pg_stream_01 -%}{{ return(none) }}{%- endif -%}
  {%- set engine_version = e.engine ~ ' ' ~ e.version -%}
  {%- set where = "dbt_pgstream: cannot deploy stream_table model '" ~ model.name ~ "' ("
      ~ relation.schema ~ '.' ~ relation.identifier ~ ") on " ~ engine_version ~ ": " -%}
  {%- for kind, value in [('schema', relation.schema), ('table name', relation.identifier)]
        if not e.quotes_names -%}
    {%- if not modules.re.match('^[a-z_][a-z0-9_$]*$', value) -%}
      {{ exceptions.raise_compiler_error(where ~ "its " ~ kind ~ " '" ~ value
          ~ "' needs quoting in SQL, and " ~ engine_version ~ " reads stream table names "
          ~ "unquoted, so it cannot create, refresh and drop it. Use a " ~ kind
          ~ " of lower-case letters, digits and _ (dbt's `alias` / `schema` config). "
          ~ "Nothing was changed.") }}
    {%- endif -%}
  {%- endfor -%}
  {%- if cfg.refresh_mode == 'DIFFERENTIAL' and e.pg_stream_01 -%}
    {%- set code = [] -%}
    {%- for token in dbt_pgstream._pgstream_sql_tokens(query) -%}
      {%- if not (token.startswith("'") or token.startswith('--') or token.startswith('/*')
                  or token.startswith('$') or token[:2] in ["E'", "e'"]) -%}
        {%- do code.append(token) -%}
      {%- else -%}
        {%- do code.append(' ') -%}
      {%- endif -%}
    {%- endfor -%}
    {%- set by_position = namespace(found=false) -%}
    {%- for match in modules.re.finditer('(?is)\\bgroup\\s+by\\s+(.*?)(?=\\b(?:having|order|limit|offset|window|union|intersect|except|fetch)\\b|\\)|$)',
                                        code | join('')) -%}
      {%- for item in match.group(1).split(',') if modules.re.match('^\\s*[0-9]+\\s*$', item) -%}
        {%- set by_position.found = true -%}
      {%- endfor -%}
    {%- endfor -%}
    {%- if by_position.found -%}
      {{ exceptions.raise_compiler_error(where ~ "its query groups by position (GROUP BY 1), "
          ~ "which pg_stream 0.1 cannot maintain in DIFFERENTIAL mode (it fails with 'column "
          ~ "\"1\" does not exist'). Name the GROUP BY expressions instead of their positions, "
          ~ "or set refresh_mode='FULL'. Nothing was changed.") }}
    {%- endif -%}
  {%- endif -%}
{% endmacro %}


{#- Private: pg_stream 0.1 cannot drop a stream table one of whose sources was dropped and
    recreated (its drop_stream_table() builds `DROP TRIGGER ... ON <oid>`, a syntax error).
    Dropping the storage table instead works: the engine's event trigger then deletes the
    catalog row. SQL (a DO block, one statement) that does that when the catalog row of
    `relation` still satisfies `condition` (a predicate over alias `st`), and marks the act
    statement as acting. -#}
{% macro _pgstream_drop_storage_sql(relation, condition) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set body -%}
BEGIN
  IF EXISTS (SELECT 1 FROM {{ e.stream_tables }} AS st
             WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }} AND {{ condition }}) THEN
    EXECUTE pg_catalog.format('DROP TABLE %I.%I CASCADE', {{ lit(relation.schema) }},
                              {{ lit(relation.identifier) }});
    PERFORM pg_catalog.set_config('dbt_pgstream.acted', 'true', true);
  END IF;
END
  {%- endset -%}
DO {{ lit(body) }}
{%- endmacro %}


{#- Private: on the real engines (pg_stream 0.1, pg_trickle 0.67) creates over one source race
    on the source's change buffer (`duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"` from their CREATE TABLE IF NOT EXISTS of the buffer), so creates
    are serialised database-wide there. Taken after the stream table's own lock, so the lock
    order is always the same. -#}
{% macro _pgstream_create_lock_sql() -%}
  SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(
      'dbt_pgstream:create', 0))
{%- endmacro %}


{#- Private: pg_trickle 0.67 names a source's change-capture objects by the source's schema and
    name, so after a source is dropped and recreated, dropping a stream table that still reads
    the dropped one also drops the triggers just created on the new source for the stream
    tables already replaced over it: they silently stop seeing changes. The engine's
    repair_stream_table() rebuilds missing triggers (and schedules a full refresh of the table
    it repairs). Run at the end of a replace caused by a dropped source, in the same
    transaction, so no write to the source can fall between the drop and the repair. -#}
{% macro _pgstream_repair_sql(relation) -%}
  SELECT {{ dbt_pgstream._pgstream_fn('repair_stream_table') }}(name => {{
      dbt_pgstream._pgstream_api_name(relation) }})
{%- endmacro %}


{#- Private: pg_trickle 0.67 gives a stream table over a source without a primary key (every dbt
    seed, most staging tables) only a non-unique index on __pgt_row_id, but refreshes an
    aggregate or DISTINCT one DIFFERENTIALly with INSERT ... ON CONFLICT (__pgt_row_id), which
    then fails: "there is no unique or exclusion constraint matching the ON CONFLICT
    specification". Such a table has one row per group, so its row id is unique: the package
    adds the unique index the engine left out, in the act statement that created the table.
    A table without the count column (a plain projection over a keyless source may hold
    duplicate rows) is left alone, and so is a partitioned one (partition_by), where PostgreSQL
    allows no unique index without the partition key. -#}
{% macro _pgstream_unique_row_id_sql(relation) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set body -%}
DECLARE v_rel regclass := pg_catalog.to_regclass(pg_catalog.format('%I.%I',
    {{ lit(relation.schema) }}, {{ lit(relation.identifier) }}));
BEGIN
  IF v_rel IS NOT NULL
     AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = v_rel) <> 'p'
     AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                 WHERE attrelid = v_rel AND attname = {{ lit(e.count) }} AND NOT attisdropped)
     AND NOT EXISTS (
         SELECT 1 FROM pg_catalog.pg_index AS ix
         JOIN pg_catalog.pg_attribute AS a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0]
         WHERE ix.indrelid = v_rel AND ix.indisunique AND ix.indnkeyatts = 1
           AND a.attname = {{ lit(e.row_id) }}) THEN
    EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON %s (%I)',
        'dbt_pgstream_row_id_' || pg_catalog.left(pg_catalog.md5(v_rel::text), 16), v_rel,
        {{ lit(e.row_id) }});
  END IF;
END
  {%- endset -%}
DO {{ lit(body) }}
{%- endmacro %}


{#- Private: pg_stream 0.1 loses changes when two DIFFERENTIAL stream tables over one source are
    refreshed in one session: after a DIFFERENTIAL refresh it deletes the change-buffer rows that
    refresh consumed at the start of the NEXT DIFFERENTIAL refresh in the same backend, before
    that refresh reads them; its scheduler refreshes every stream table in one backend, and so
    does refresh_all_stream_tables. Measured: sa and sb over one source, INSERT, refresh sa
    (+1), refresh sb (+0: the row is lost). The package cannot avoid it, so a DIFFERENTIAL stream
    table that would share a base-table source with another DIFFERENTIAL one is refused: this
    runs right after the create (or the alter to DIFFERENTIAL) in the act statement, so the
    error rolls everything back and the database is left as it was. -#}
{% macro _pgstream_assert_no_shared_differential_sql(relation) -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- set message = "dbt_pgstream: cannot deploy stream_table model '" ~ model.name ~ "' ("
      ~ relation.schema ~ "." ~ relation.identifier ~ ") in DIFFERENTIAL mode on pg_stream "
      ~ e.version ~ ": it reads %s, which DIFFERENTIAL stream table(s) %s also read, and "
      ~ "pg_stream 0.1 loses changes when two DIFFERENTIAL stream tables over one source are "
      ~ "refreshed in one session (its scheduler refreshes them all in one). Set "
      ~ "refresh_mode='FULL' on this model or on the others, or use pg_trickle. Nothing was "
      ~ "changed." -%}
  {%- set body -%}
DECLARE v_sources text; v_others text;
BEGIN
  SELECT pg_catalog.string_agg(DISTINCT dep.source_relid::regclass::text, ', '),
         pg_catalog.string_agg(DISTINCT pg_catalog.format('%I.%I', o.{{ e.st_schema }},
                                                          o.{{ e.st_name }}), ', ')
    INTO v_sources, v_others
  FROM {{ e.stream_tables }} AS st
  JOIN {{ e.dependencies }} AS dep ON dep.{{ e.id }} = st.{{ e.id }} AND dep.source_type = 'TABLE'
  JOIN {{ e.dependencies }} AS odep
    ON odep.source_relid = dep.source_relid AND odep.{{ e.id }} <> st.{{ e.id }}
  JOIN {{ e.stream_tables }} AS o
    ON o.{{ e.id }} = odep.{{ e.id }} AND o.refresh_mode = 'DIFFERENTIAL'
  WHERE {{ dbt_pgstream._pgstream_catalog_match(relation) }} AND st.refresh_mode = 'DIFFERENTIAL';
  IF v_others IS NOT NULL THEN
    RAISE EXCEPTION USING MESSAGE = pg_catalog.format({{ lit(message) }}, v_sources, v_others);
  END IF;
END
  {%- endset -%}
DO {{ lit(body) }}
{%- endmacro %}
