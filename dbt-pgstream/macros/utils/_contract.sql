{#- Private: dbt model contracts (`contract: {enforced: true}`) for stream_table models. Same check
    and same mismatch table as dbt's assert_columns_equivalent (it runs the defining query and the
    YAML columns as `where false limit 0` queries: plain PostgreSQL, two queries), except that
    the engine's own columns (`__pgs_row_id`, `__pgs_count` on pg_stream; `__pgt_row_id`,
    `__pgt_count` on pg_trickle: any column with the engine's internal prefix) are left out of
    both sides: they never count as a mismatch. Runs only when the contract is enforced, before the look-up, on
    every run (an unchanged model with an enforced contract costs these queries too: the YAML may
    have changed while the query did not). -#}
{% macro _pgstream_contract_enforced() %}
  {%- set contract = config.get('contract') -%}
  {{ return(contract is not none and contract.enforced is sameas true) }}
{% endmacro %}


{% macro _pgstream_assert_contract(query) %}
  {%- set internal = dbt_pgstream._pgstream_engine().internal_prefix -%}
  {%- set user_columns = {} -%}
  {%- for name, column in (model['columns'] or {}).items() if not name.startswith(internal) -%}
    {%- do user_columns.update({name: column}) -%}
  {%- endfor -%}
  {%- if not user_columns -%}
    {{ exceptions.raise_contract_error([], []) }}
  {%- endif -%}
  {%- set sql_columns = [] -%}
  {%- for column in format_columns(get_column_schema_from_query(query,
                                                               config.get('sql_header', none)))
        if not column['name'].startswith(internal) -%}
    {%- do sql_columns.append(column) -%}
  {%- endfor -%}
  {%- set yaml_columns = format_columns(get_column_schema_from_query(
      get_empty_schema_sql(user_columns))) -%}
  {%- if sql_columns | length != yaml_columns | length -%}
    {%- do exceptions.raise_contract_error(yaml_columns, sql_columns) -%}
  {%- endif -%}
  {%- for sql_col in sql_columns -%}
    {%- set matching = yaml_columns | selectattr('name', 'equalto', sql_col['name']) | list -%}
    {%- if not matching or matching[0]['formatted'] != sql_col['formatted'] -%}
      {%- do exceptions.raise_contract_error(yaml_columns, sql_columns) -%}
    {%- endif -%}
  {%- endfor -%}
{% endmacro %}
