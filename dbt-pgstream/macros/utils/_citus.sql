{#- Private: the storage distribution of a stream table on Citus (pgstream-lite only; docs/citus.md).
    A model may set ONE of:
      distributed_by: <column>        hash-distributed by this output column
      colocate_with: <relation>       (with or without distributed_by) co-located with this
                                      hash-distributed table; without distributed_by, by the
                                      column of that table's name
      reference: true                 a reference table (a copy on every node)
    Unset: the engine decides (distributed and co-located with the source when the query keeps
    its distribution column, else on the coordinator). The choice is compared with Citus's
    catalog (pg_dist_partition) at every run: a difference is a configuration change that
    replaces the stream table. -#}


{#- Validates the model's distribution config (no SQL). Returns none (not set) or a dict with
    the keys set: distributed_by (text), colocate_with (text: schema.table as given, a ref()
    rendered without its database), reference (true). Raises a compile error naming the model,
    the key, the value and what is allowed. -#}
{% macro _pgstream_citus_config() %}
  {%- set by = config.get('distributed_by', none) -%}
  {%- set with = config.get('colocate_with', none) -%}
  {%- set ref = config.get('reference', none) -%}
  {%- set spec = {} -%}
  {%- if by is not none -%}
    {%- if not (by is string and modules.re.match('^[A-Za-z_][A-Za-z0-9_$]*$', by | trim)) -%}
      {%- do dbt_pgstream._pgstream_config_error('distributed_by', by,
          "expected the name of one of the model's output columns (text, e.g. 'customer_id')") -%}
    {%- endif -%}
    {%- do spec.update({'distributed_by': by | trim}) -%}
  {%- endif -%}
  {%- if with is not none -%}
    {%- if with.identifier is defined and with.schema is defined -%}
      {%- set with = with.schema ~ '.' ~ with.identifier -%}
    {%- endif -%}
    {%- if not (with is string and with | trim != '') -%}
      {%- do dbt_pgstream._pgstream_config_error('colocate_with', with,
          "expected a hash-distributed table, as 'schema.table' or ref()/source()") -%}
    {%- endif -%}
    {%- do spec.update({'colocate_with': with | trim}) -%}
  {%- endif -%}
  {%- if ref is not none -%}
    {%- if not (ref is sameas true or ref is sameas false) -%}
      {%- do dbt_pgstream._pgstream_config_error('reference', ref,
          "expected a boolean: true (a reference table) or false (not a string)") -%}
    {%- endif -%}
    {%- if ref and spec -%}
      {%- do dbt_pgstream._pgstream_config_error('reference', ref,
          "reference: true cannot be combined with distributed_by or colocate_with (a "
          ~ "reference table is copied to every node, it has no distribution column)") -%}
    {%- endif -%}
    {%- if ref -%}{%- do spec.update({'reference': true}) -%}{%- endif -%}
  {%- endif -%}
  {{ return(spec if spec else none) }}
{% endmacro %}


{#- Raises (before any change) when the model sets a distribution but the engine or database
    cannot honour it: only pgstream-lite places stream tables on Citus, and only in a database
    with the citus extension. One query, only for models that set a distribution. -#}
{% macro _pgstream_citus_assert_supported(relation, cfg, e) %}
  {%- if cfg.get('distribution') is none -%}{{ return(none) }}{%- endif -%}
  {%- set key = cfg.distribution.keys() | list | first -%}
  {%- set where = "dbt_pgstream: invalid config for stream_table model '" ~ model.name ~ "' ("
      ~ relation.schema ~ '.' ~ relation.identifier ~ "): " ~ key ~ "="
      ~ dbt_pgstream._pgstream_show(cfg.distribution[key]) ~ " is not allowed: " -%}
  {%- if e.engine != 'pgstream-lite' -%}
    {{ exceptions.raise_compiler_error(where ~ "distributed_by / colocate_with / reference "
        ~ "place a stream table on a Citus cluster, which only pgstream-lite does; "
        ~ (e.engine or 'no engine') ~ " keeps every stream table on one server. Remove the key. "
        ~ "Nothing was changed.") }}
  {%- endif -%}
  {%- set found = run_query("SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') "
                            ~ "IS NOT NULL AS citus") -%}
  {%- if not found.rows[0][0] -%}
    {{ exceptions.raise_compiler_error(where ~ "the citus extension is not installed in "
        ~ "database '" ~ target.database ~ "', so there is no cluster to distribute the "
        ~ "stream table over. Remove the key, or run on a Citus coordinator. Nothing was "
        ~ "changed.") }}
  {%- endif -%}
{% endmacro %}


{#- SQL predicate over the catalog row `st` (pgstream-lite): the storage's placement in
    pg_dist_partition matches the config `spec`. -#}
{% macro _pgstream_sql_citus_matches(spec, alias='st') -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition AS p
          WHERE p.logicalrelid = {{ alias }}.{{ e.relid }}
  {%- if spec.reference %}
            AND p.partmethod = 'n' AND p.repmodel = 't')
  {%- else %}
            AND p.partmethod = 'h'
    {%- if spec.distributed_by %}
            AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
                = {{ lit(spec.distributed_by) }}
    {%- endif %}
    {%- if spec.colocate_with %}
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition AS w
                        WHERE w.logicalrelid = pg_catalog.to_regclass({{ lit(spec.colocate_with) }})
                          AND w.colocationid = p.colocationid
              {%- if not spec.distributed_by %}
                          AND pg_catalog.column_to_column_name(w.logicalrelid, w.partkey)
                              = pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
              {%- endif %})
    {%- endif %})
  {%- endif %}
{%- endmacro %}


{#- Lookup column (JSON text or NULL): {"differs": bool, "old": text} for a model that sets a
    distribution: whether Citus's catalog places the storage otherwise, and how it does. -#}
{% macro _pgstream_sql_citus_distribution(cfg, alias='st') -%}
  {%- set spec = cfg.get('distribution') -%}
  {%- if spec is none -%}
  NULL::text
  {%- else -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  (SELECT pg_catalog.json_build_object(
       'differs', NOT {{ dbt_pgstream._pgstream_sql_citus_matches(spec, alias) }},
       'old', COALESCE((SELECT CASE WHEN p.partmethod = 'h'
                                    THEN 'distributed_by ' || pg_catalog.column_to_column_name(
                                             p.logicalrelid, p.partkey)
                                    WHEN p.partmethod = 'n' AND p.repmodel = 't'
                                    THEN 'reference' END
                        FROM pg_catalog.pg_dist_partition AS p
                        WHERE p.logicalrelid = {{ alias }}.{{ e.relid }}), 'coordinator'))::text)
  {%- endif -%}
{%- endmacro %}


{#- The text of a distribution config, as the run's message shows it. -#}
{% macro _pgstream_citus_text(spec) -%}
  {%- if spec.reference -%}reference
  {%- else -%}
    {%- set parts = [] -%}
    {%- if spec.distributed_by -%}{%- do parts.append('distributed_by ' ~ spec.distributed_by) -%}{%- endif -%}
    {%- if spec.colocate_with -%}{%- do parts.append('colocate_with ' ~ spec.colocate_with) -%}{%- endif -%}
    {{ parts | join(', ') }}
  {%- endif -%}
{%- endmacro %}


{#- The configuration change (a list of 0 or 1 change, see _pgstream_get_changes) of the
    storage's distribution: only a replace applies it. -#}
{% macro _pgstream_citus_changes(cfg, state) %}
  {%- set held = state.get('citus_distribution') or {} -%}
  {%- if cfg.get('distribution') is none or not held.get('differs') -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set new = dbt_pgstream._pgstream_citus_text(cfg.distribution) | trim -%}
  {{ return([dbt_pgstream._pgstream_change('distribution', held.old, new,
             'distribution ' ~ held.old ~ ' -> ' ~ new, true, true)]) }}
{% endmacro %}


{#- The replace's re-check under the lock (`condition`), extended by "the distribution
    differs" for a model that sets one. -#}
{% macro _pgstream_citus_replace_condition(condition, cfg) -%}
  {%- if cfg.get('distribution') is none -%}
    {{ return(condition) }}
  {%- endif -%}
  {{ return('(' ~ condition ~ ' OR NOT '
            ~ dbt_pgstream._pgstream_sql_citus_matches(cfg.distribution) ~ ')') }}
{%- endmacro %}


{#- Statements around create_stream_table for a model that sets a distribution: before, the
    transaction-local setting pgstream_lite.citus_distribution the engine's placement reads;
    after, the engine's check that it was applied (raises when the query reads no Citus table:
    the whole act statement rolls back), and the setting cleared. -#}
{% macro _pgstream_citus_before_create_sql(cfg) %}
  {%- if cfg.get('distribution') is none -%}{{ return([]) }}{%- endif -%}
  {{ return(["SELECT pg_catalog.set_config('pgstream_lite.citus_distribution', "
             ~ dbt_pgstream._pgstream_literal(tojson(cfg.distribution)) ~ ", true)"]) }}
{% endmacro %}

{% macro _pgstream_citus_after_create_sql(relation, cfg) %}
  {%- if cfg.get('distribution') is none -%}{{ return([]) }}{%- endif -%}
  {{ return(["SELECT pgstream_lite.citus_assert_distribution("
             ~ dbt_pgstream._pgstream_api_name(relation) ~ ")",
             "SELECT pg_catalog.set_config('pgstream_lite.citus_distribution', '', true)"]) }}
{% endmacro %}
