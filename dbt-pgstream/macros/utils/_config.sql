{#- Private: read and validate the stream_table config of the current model. Runs no SQL; every
    bad value is a compile error naming the model, the key, the value and what is allowed. -#}

{% macro _pgstream_show(value) -%}
  {%- if value is string -%}'{{ value }}'{%- else -%}{{ value }}{%- endif -%}
{%- endmacro %}


{% macro _pgstream_config_error(key, value, allowed) %}
  {{ exceptions.raise_compiler_error(
      "dbt_pgstream: invalid config for stream_table model '" ~ model.name ~ "': "
      ~ key ~ "=" ~ dbt_pgstream._pgstream_show(value) ~ " is not allowed; " ~ allowed) }}
{% endmacro %}


{#- Is `text` a schedule the pg_stream API accepts (grammar only; the minimum number of seconds is
    checked by pg_stream itself)? Durations: 30s, 5m, 1h30m, 2d, 1w or bare seconds; cron: 5 or 6
    fields, or an @alias. -#}
{% macro _pgstream_is_valid_schedule(text) %}
  {%- set re = modules.re -%}
  {%- if text.startswith('@') -%}
    {{ return(text in ['@hourly', '@daily', '@weekly', '@monthly', '@yearly', '@annually']) }}
  {%- elif re.search('\\s', text) -%}
    {%- set fields = text.split() -%}
    {%- if fields | length not in [5, 6] -%}
      {{ return(false) }}
    {%- endif -%}
    {%- for field in fields -%}
      {%- if not re.match('^[0-9A-Za-z*/,?#-]+$', field) -%}
        {{ return(false) }}
      {%- endif -%}
    {%- endfor -%}
    {{ return(true) }}
  {%- else -%}
    {{ return(dbt_pgstream._pgstream_is_duration(text)) }}
  {%- endif -%}
{% endmacro %}


{#- Is `value` a duration of the engines' grammar: '30s', '5m', '1h30m', '2d', '1w' (units s, m,
    h, d, w, combined), or a whole number of seconds (text or integer)? The one grammar of the
    package (schedules, stream_table_is_fresh's max_staleness); the engines parse the same
    (parse_duration_seconds). -#}
{% macro _pgstream_is_duration(value) %}
  {%- if value is sameas true or value is sameas false -%}{{ return(false) }}{%- endif -%}
  {%- if value is number -%}{{ return(value is integer and value >= 0) }}{%- endif -%}
  {{ return(value is string
            and modules.re.match('^(?:([0-9]+[smhdw])+|[0-9]+)$', value | trim) is not none) }}
{% endmacro %}


{#- Returns a dict: schedule (trimmed text, or none = CALCULATED), refresh_mode (upper case),
    initialize (bool), status (upper case or none), name, schema, indexes, options (pg_trickle's
    options that are set: _options.sql). -#}
{% macro _pgstream_stream_table_config() %}
  {#- sql_header (config or set_sql_header): dbt would run it before the create only; the engine
      refreshes the stream table later, in sessions of its own, from the stored query alone, so
      the refreshes would see other settings than the create (README: "sql_header"). -#}
  {%- set sql_header = config.get('sql_header', none) -%}
  {%- if sql_header is not none and sql_header | string | trim != '' -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: invalid config for stream_table model '" ~ model.name ~ "': sql_header "
        ~ "is not supported: the engine refreshes a stream table later, in sessions of its own, "
        ~ "from the stored defining query alone, so what the header sets (search_path, "
        ~ "settings, temporary objects) would hold for the create but not for the refreshes. "
        ~ "Write it into the query instead (schema-qualified names: ref() / source()), or set "
        ~ "it where every session starts (ALTER DATABASE ... SET / ALTER ROLE ... SET). "
        ~ "Nothing was changed.") }}
  {%- endif -%}
  {%- set schedule_allowed = "expected a duration ('30s', '5m', '1h30m', '2d', '1w', or bare "
      ~ "seconds such as '90'), a cron expression of 5 or 6 fields ('*/5 * * * *'), one of "
      ~ "'@hourly', '@daily', '@weekly', '@monthly', '@yearly', '@annually', or none for "
      ~ "CALCULATED (the schedule of the stream tables that read this one)" -%}

  {#- schedule: an explicit none (CALCULATED) differs from "not set" (default '1m'). -#}
  {%- set raw_schedule = config.get('schedule', '__dbt_pgstream_unset__') -%}
  {%- if raw_schedule == '__dbt_pgstream_unset__' -%}
    {%- set raw_schedule = '1m' -%}
  {%- endif -%}
  {%- if raw_schedule is none -%}
    {%- set schedule = none -%}
  {%- elif raw_schedule is sameas true or raw_schedule is sameas false -%}
    {%- do dbt_pgstream._pgstream_config_error('schedule', raw_schedule, schedule_allowed) -%}
  {%- elif raw_schedule is number -%}
    {%- if raw_schedule is integer and raw_schedule >= 0 -%}
      {%- set schedule = raw_schedule | string -%}
    {%- else -%}
      {%- do dbt_pgstream._pgstream_config_error('schedule', raw_schedule, schedule_allowed) -%}
    {%- endif -%}
  {%- elif raw_schedule is string -%}
    {%- set schedule = raw_schedule | trim -%}
    {%- if not dbt_pgstream._pgstream_is_valid_schedule(schedule) -%}
      {%- do dbt_pgstream._pgstream_config_error('schedule', raw_schedule, schedule_allowed) -%}
    {%- endif -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_config_error('schedule', raw_schedule, schedule_allowed) -%}
  {%- endif -%}

  {#- AUTO and IMMEDIATE exist on pg_trickle only: checked against the engine before any SQL
      runs (_pgstream_assert_engine_supports) -#}
  {%- set raw_mode = config.get('refresh_mode', 'DIFFERENTIAL') -%}
  {%- if raw_mode is string
        and (raw_mode | trim | upper) in ['FULL', 'DIFFERENTIAL', 'AUTO', 'IMMEDIATE'] -%}
    {%- set refresh_mode = raw_mode | trim | upper -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_config_error('refresh_mode', raw_mode,
        "expected 'FULL' or 'DIFFERENTIAL' (any case), or on pg_trickle also 'AUTO' or "
        ~ "'IMMEDIATE'") -%}
  {%- endif -%}

  {%- set raw_initialize = config.get('initialize', true) -%}
  {%- if raw_initialize is sameas true or raw_initialize is sameas false -%}
    {%- set initialize = raw_initialize -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_config_error('initialize', raw_initialize,
        "expected a boolean: true or false (not a string)") -%}
  {%- endif -%}

  {%- set raw_refresh_on_run = config.get('refresh_on_run', false) -%}
  {%- if raw_refresh_on_run is sameas true or raw_refresh_on_run is sameas false -%}
    {%- set refresh_on_run = raw_refresh_on_run -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_config_error('refresh_on_run', raw_refresh_on_run,
        "expected a boolean: true or false (not a string)") -%}
  {%- endif -%}

  {%- set raw_status = config.get('status', none) -%}
  {%- if raw_status is none -%}
    {%- set status = none -%}
  {%- elif raw_status is string and (raw_status | trim | upper) in ['ACTIVE', 'SUSPENDED'] -%}
    {%- set status = raw_status | trim | upper -%}
  {%- else -%}
    {%- do dbt_pgstream._pgstream_config_error('status', raw_status,
        "expected 'ACTIVE' or 'SUSPENDED' (any case), or none to leave the status as it is") -%}
  {%- endif -%}

  {#- dbt's own key (as for materialized views); dbt may hand it over as a string enum -#}
  {%- set raw_occ = config.get('on_configuration_change', none) -%}
  {%- set on_configuration_change = 'apply' if raw_occ is none else raw_occ ~ '' -%}
  {%- if on_configuration_change not in ['apply', 'continue', 'fail'] -%}
    {%- do dbt_pgstream._pgstream_config_error('on_configuration_change', raw_occ,
        "expected 'apply' (default), 'continue' or 'fail'") -%}
  {%- endif -%}

  {#- where the model deploys (one resolution for the materialization and the operations) -#}
  {%- set raw_name = config.get('stream_table_name', none) -%}
  {%- set raw_schema = config.get('stream_table_schema', none) -%}
  {%- set schema_key = 'schema' if raw_schema is none else 'stream_table_schema' -%}
  {%- set schema, name = dbt_pgstream._pgstream_deploy_names(model.name, config, this.identifier,
                                                             this.schema, this.quote_policy) -%}
  {%- if '.' in schema -%}
    {%- do dbt_pgstream._pgstream_config_error(schema_key, schema,
        "pg_stream addresses a stream table as 'schema.table' split on the first dot, so a "
        ~ "schema name containing a dot cannot be used") -%}
  {%- endif -%}

  {#- Identifiers longer than NAMEDATALEN - 1 bytes are truncated by PostgreSQL, so the storage
      table would not carry the name pg_stream's catalog records. -#}
  {%- for key, value in [('stream_table_name' if raw_name is not none else 'alias', name),
                         (schema_key, schema)] -%}
    {%- if value.encode('utf-8') | length > 63 -%}
      {%- do dbt_pgstream._pgstream_config_error(key, value,
          "it is longer than 63 bytes, and PostgreSQL truncates longer identifiers") -%}
    {%- endif -%}
    {#- dbt's own SQL (grants, persist_docs) quotes identifiers without doubling a '"' in them -#}
    {%- if '"' in value and (config.get('grants') or config.get('persist_docs')) -%}
      {%- do dbt_pgstream._pgstream_config_error(key, value,
          "a name containing a double quote cannot be used with `grants` or `persist_docs`: dbt "
          ~ "renders it in their SQL without escaping the quote") -%}
    {%- endif -%}
  {%- endfor -%}

  {{ return({
      'schedule': schedule,
      'refresh_mode': refresh_mode,
      'initialize': initialize,
      'refresh_on_run': refresh_on_run,
      'status': status,
      'name': name,
      'schema': schema,
      'on_configuration_change': on_configuration_change,
      'indexes': dbt_pgstream._pgstream_indexes_config(name),
      'options': dbt_pgstream._pgstream_options_config(refresh_mode),
      'distribution': dbt_pgstream._pgstream_citus_config(),
  }) }}
{% endmacro %}
