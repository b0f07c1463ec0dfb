{#- dbt run-operation check_cdc_health
    Prints the engine's check_cdc_health() (one row per source table the engine captures changes
    from, in this database; pg_stream and pg_trickle list base tables only, not stream tables) and
    fails, naming the source tables and their alerts, when any row has an alert. A source that no
    longer exists is an alert everywhere ('source table no longer exists'): pg_stream 0.1 and
    pg_trickle 0.67 keep listing a dropped source (under its bare oid) with no alert of their own.
    Returns the rows (dicts) to a calling macro. -#}
{% macro check_cdc_health() -%}
  {{ return(adapter.dispatch('check_cdc_health', 'dbt_pgstream')()) }}
{%- endmacro %}

{% macro default__check_cdc_health() -%}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {%- call statement('pgstream_check_cdc_health', fetch_result=True, auto_begin=True) -%}
    {{ dbt_pgstream._pgstream_assert_installed_sql() }};
    SELECT COALESCE(json_agg(json_build_object(
               'source_table', h.source_table, 'cdc_mode', h.cdc_mode,
               'slot_name', h.slot_name, 'lag_bytes', h.lag_bytes,
               'confirmed_lsn', h.confirmed_lsn,
               'alert', COALESCE(h.alert, CASE WHEN NOT EXISTS (
                   SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = h.source_relid::oid)
                   THEN 'source table no longer exists' END))
           ORDER BY h.source_table), '[]')::text AS health
    FROM {{ dbt_pgstream._pgstream_fn('check_cdc_health') }}() AS h
  {%- endcall -%}
  {%- set rows = fromjson(load_result('pgstream_check_cdc_health').table.rows[0][0]) -%}
  {%- do adapter.commit() -%}
  {%- set table_rows = [] -%}
  {%- set alerts = [] -%}
  {%- for row in rows -%}
    {%- do table_rows.append([row.source_table, row.cdc_mode, row.slot_name, row.lag_bytes,
                              row.confirmed_lsn, row.alert]) -%}
    {%- if row.alert is not none -%}
      {%- do alerts.append(row.source_table ~ ': ' ~ row.alert) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set lines = dbt_pgstream._pgstream_text_table(
      ['source table', 'cdc mode', 'slot', 'lag bytes', 'confirmed lsn', 'alert'], table_rows) -%}
  {{ log('dbt_pgstream: change capture of ' ~ rows | length ~ ' source table(s)\n'
         ~ lines | join('\n'), info=True) }}
  {%- if alerts | length > 0 -%}
    {{ exceptions.raise_compiler_error(
        'dbt_pgstream: check_cdc_health: ' ~ alerts | length ~ ' source table(s) with an alert: '
        ~ alerts | join('; ')) }}
  {%- endif -%}
  {{ return(rows) }}
{%- endmacro %}
