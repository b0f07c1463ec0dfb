{#- Private: pg_trickle's own stream-table options as model config (README: "pg_trickle's
    options"). One spec per option, the ONLY place that knows them:

      key       the model config key, which is also the API's argument name
      kind      'choice' (text from `choices`, any case, sent and stored in lower case), 'bool',
                'count' (integer >= `min`; 0 means "no limit" where `zero_is_none`),
                'fraction' (a number from 0 to 1; 0 means "no limit"), 'partition'
                ('col', 'a,b', 'LIST:col', 'HASH:col' or 'HASH:col:N', N from 2 to 256),
                'column' (a column name of the query's output)
      column    the pg_trickle catalog column (pgt_stream_tables) that stores it
      create    create_stream_table() takes it (else it is set by an alter right after the create)
      alter     alter_stream_table() changes it in place (else a change replaces the table:
                partition_by (pg_trickle's own alter rebuilds the storage table anyway, so the
                package replaces and re-applies grants, indexes and docs), the storage options)
      requires  an extension the option needs in the target database

    The accepted values are those pg_trickle's source accepts (0.67: src/api/alter.rs,
    src/api/mod.rs, src/dag.rs), which are stricter in places than its docs. An option left unset
    (or none) is not sent and never compared, so it never causes an alter: the engine's value
    stays as it is (to go back to the engine's default, set the default explicitly). -#}
{% macro _pgstream_option_specs() %}
  {{ return([
      {'key': 'cdc_mode', 'kind': 'choice', 'choices': ['auto', 'trigger', 'wal'],
       'column': 'requested_cdc_mode', 'create': true, 'alter': true},
      {'key': 'append_only', 'kind': 'bool', 'column': 'is_append_only',
       'create': true, 'alter': true},
      {'key': 'partition_by', 'kind': 'partition', 'column': 'st_partition_key',
       'create': true, 'alter': false},
      {'key': 'diamond_consistency', 'kind': 'choice', 'choices': ['atomic', 'none'],
       'column': 'diamond_consistency', 'create': true, 'alter': true},
      {'key': 'diamond_schedule_policy', 'kind': 'choice', 'choices': ['fastest', 'slowest'],
       'column': 'diamond_schedule_policy', 'create': true, 'alter': true},
      {'key': 'pooler_compatibility_mode', 'kind': 'bool', 'column': 'pooler_compatibility_mode',
       'create': true, 'alter': true},
      {'key': 'max_differential_joins', 'kind': 'count', 'min': 0, 'zero_is_none': true,
       'column': 'max_differential_joins', 'create': true, 'alter': true},
      {'key': 'max_delta_fraction', 'kind': 'fraction', 'column': 'max_delta_fraction',
       'create': true, 'alter': true},
      {'key': 'output_distribution_column', 'kind': 'column', 'column': none,
       'create': true, 'alter': false, 'requires': 'citus'},
      {'key': 'storage_backend', 'kind': 'choice',
       'choices': ['heap', 'none', 'citus', 'pg_mooncake'], 'column': 'storage_backend',
       'create': true, 'alter': false},
      {'key': 'fuse', 'kind': 'choice', 'choices': ['off', 'on', 'auto'], 'column': 'fuse_mode',
       'create': false, 'alter': true},
      {'key': 'fuse_ceiling', 'kind': 'count', 'min': 1, 'column': 'fuse_ceiling',
       'create': false, 'alter': true},
      {'key': 'fuse_sensitivity', 'kind': 'count', 'min': 1, 'column': 'fuse_sensitivity',
       'create': false, 'alter': true},
  ]) }}
{% endmacro %}


{#- Private: the spec of option `key` (none if it is not one). -#}
{% macro _pgstream_option_spec(key) %}
  {%- for spec in dbt_pgstream._pgstream_option_specs() if spec.key == key -%}
    {{ return(spec) }}
  {%- endfor -%}
  {{ return(none) }}
{% endmacro %}


{#- Private: the set options of the current model, validated: a dict key -> normalised value
    (lower-case text, bool, int, float), in spec order. Every bad value is a compile error naming
    the model, the key, the value and what is allowed. `refresh_mode` (upper case) is needed for
    the combinations pg_trickle refuses. -#}
{% macro _pgstream_options_config(refresh_mode) %}
  {%- set re = modules.re -%}
  {%- set options = {} -%}
  {%- for spec in dbt_pgstream._pgstream_option_specs() -%}
    {%- set raw = config.get(spec.key, none) -%}
    {%- if raw is not none -%}
      {%- if spec.kind == 'choice' -%}
        {%- if raw is string and (raw | trim | lower) in spec.choices -%}
          {%- do options.update({spec.key: raw | trim | lower}) -%}
        {%- else -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw, "expected one of '"
              ~ spec.choices | join("', '") ~ "' (any case)") -%}
        {%- endif -%}
      {%- elif spec.kind == 'bool' -%}
        {%- if raw is sameas true or raw is sameas false -%}
          {%- do options.update({spec.key: raw}) -%}
        {%- else -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw,
              "expected a boolean: true or false (not a string)") -%}
        {%- endif -%}
      {%- elif spec.kind == 'count' -%}
        {%- if raw is number and raw is not sameas true and raw is not sameas false
              and raw is integer and raw >= spec.min and raw <= 2147483647 -%}
          {%- do options.update({spec.key: raw}) -%}
        {%- else -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw, "expected an integer from "
              ~ spec.min ~ " to 2147483647" ~ (" (0: no limit)" if spec.get('zero_is_none')
              else "")) -%}
        {%- endif -%}
      {%- elif spec.kind == 'fraction' -%}
        {%- if raw is number and raw is not sameas true and raw is not sameas false
              and raw >= 0 and raw <= 1 -%}
          {%- do options.update({spec.key: raw | float}) -%}
        {%- else -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw,
              "expected a number from 0 to 1: the fraction of the source's rows above which a "
              ~ "refresh is done in FULL (0: no limit)") -%}
        {%- endif -%}
      {%- elif spec.kind == 'partition' -%}
        {%- set m = re.match('^(?i:(list|hash):)?([^:]+?)(?::([0-9]+))?$', raw | trim)
            if raw is string else none -%}
        {%- set columns = (m.group(2).split(',') | map('trim') | list) if m else [] -%}
        {%- set method = (m.group(1) or 'range') | lower if m else none -%}
        {%- if m is none or '' in columns
              or (method != 'range' and columns | length > 1)
              or (m.group(3) is not none and (method != 'hash' or (m.group(3) | int) < 2
                                              or (m.group(3) | int) > 256)) -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw,
              "expected output column(s) of the query: 'col' or 'col_a,col_b' (RANGE), "
              ~ "'LIST:col', 'HASH:col' or 'HASH:col:N' with N from 2 to 256") -%}
        {%- endif -%}
        {%- do options.update({spec.key: raw | trim}) -%}
      {%- elif spec.kind == 'column' -%}
        {%- if raw is string and raw | trim | length > 0 -%}
          {%- do options.update({spec.key: raw | trim}) -%}
        {%- else -%}
          {%- do dbt_pgstream._pgstream_config_error(spec.key, raw,
              "expected the name of an output column of the query") -%}
        {%- endif -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {#- combinations pg_trickle refuses (src/api/alter.rs), caught before any SQL runs -#}
  {%- if options.get('append_only') and refresh_mode in ['FULL', 'IMMEDIATE'] -%}
    {%- do dbt_pgstream._pgstream_config_error('append_only', true,
        "append_only is not supported with refresh_mode '" ~ refresh_mode
        ~ "'; use 'DIFFERENTIAL' or 'AUTO'") -%}
  {%- endif -%}
  {%- if options.get('diamond_schedule_policy') == 'slowest'
        and options.get('diamond_consistency') == 'none' -%}
    {%- do dbt_pgstream._pgstream_config_error('diamond_schedule_policy', 'slowest',
        "'slowest' requires diamond_consistency 'atomic' (it is 'none')") -%}
  {%- endif -%}
  {{ return(options) }}
{% endmacro %}


{#- Private: the SQL literal of an option's value as the API takes it. -#}
{% macro _pgstream_option_sql_value(spec, value) -%}
  {%- if spec.kind == 'bool' -%}
    {{- 'true' if value else 'false' -}}
  {%- elif spec.kind == 'count' -%}
    {{- value -}}
  {%- elif spec.kind == 'fraction' -%}
    {{- value ~ '::float8' -}}
  {%- else -%}
    {{- dbt_pgstream._pgstream_literal(value) -}}
  {%- endif -%}
{%- endmacro %}


{#- Private: SQL (text) of the value the engine holds for `spec` for catalog row `alias`. -#}
{% macro _pgstream_sql_option_stored(spec, alias='st') -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {%- if spec.key == 'output_distribution_column' -%}
  (SELECT pg_catalog.column_to_column_name(dist.logicalrelid, dist.partkey)
   FROM pg_catalog.pg_dist_partition AS dist WHERE dist.logicalrelid = {{ alias }}.{{ e.relid }})
  {%- elif spec.get('zero_is_none') or spec.kind == 'fraction' -%}
  COALESCE({{ alias }}.{{ spec.column }}, 0)
  {%- else -%}
  {{ alias }}.{{ spec.column }}
  {%- endif -%}
{%- endmacro %}


{#- Private: predicate: the option `key` set to `value` differs from what the engine holds. -#}
{% macro _pgstream_sql_option_differs(key, value, alias='st') -%}
  {%- set spec = dbt_pgstream._pgstream_option_spec(key) -%}
  ({{ dbt_pgstream._pgstream_sql_option_stored(spec, alias) }} IS DISTINCT FROM
   {{ dbt_pgstream._pgstream_option_sql_value(spec, value) }})
{%- endmacro %}


{#- Private: JSON text {"key": [stored value as text, differs], ...} of the set `options`, for
    the look-up; NULL when none is set. -#}
{% macro _pgstream_sql_option_state(options, alias='st') -%}
  {%- if not options -%}
  NULL::text
  {%- else -%}
  pg_catalog.json_build_object(
    {%- for key, value in options.items() %}
    {{ dbt_pgstream._pgstream_literal(key) }}, pg_catalog.json_build_array(
        ({{ dbt_pgstream._pgstream_sql_option_stored(dbt_pgstream._pgstream_option_spec(key),
                                                      alias) }})::text,
        COALESCE({{ dbt_pgstream._pgstream_sql_option_differs(key, value, alias) }}, false))
    {{- ',' if not loop.last }}
    {%- endfor %})::text
  {%- endif -%}
{%- endmacro %}


{#- Private: predicate: an option that only a replace can change differs (for the act
    statement's re-check under the lock); `false` when none is set. -#}
{% macro _pgstream_sql_replace_options_differ(options, alias='st') -%}
  {%- set parts = [] -%}
  {%- for key, value in (options or {}).items()
        if not dbt_pgstream._pgstream_option_spec(key).alter -%}
    {%- do parts.append(dbt_pgstream._pgstream_sql_option_differs(key, value, alias)) -%}
  {%- endfor -%}
  {{- '(' ~ parts | join(' OR ') ~ ')' if parts else 'false' -}}
{%- endmacro %}


{#- Private: the named arguments `name => value` for `options` (a dict of set options), those
    the API call `verb` takes: 'create', 'alter', or 'after_create' (those only an alter sets,
    sent right after the create). -#}
{% macro _pgstream_option_args(options, verb) %}
  {%- set args = [] -%}
  {%- for key, value in (options or {}).items() -%}
    {%- set spec = dbt_pgstream._pgstream_option_spec(key) -%}
    {%- set wanted = (spec.alter and not spec.create) if verb == 'after_create' else spec[verb] -%}
    {%- if wanted -%}
      {%- do args.append(key ~ ' => ' ~ dbt_pgstream._pgstream_option_sql_value(spec, value)) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(args) }}
{% endmacro %}


{#- Private: refuses, before any SQL is sent, what the target's engine does not have: pg_trickle's
    options and the AUTO / IMMEDIATE refresh modes on pg_stream (and pgstream-lite), and an
    option whose extension is not installed in the target database (output_distribution_column
    and storage_backend 'citus' need Citus, 'pg_mooncake' needs pg_mooncake). One error naming
    the model, the key(s), the engine and what to do.
    Args: relation (Relation), cfg (dict from _pgstream_stream_table_config), e (the engine dict). -#}
{% macro _pgstream_assert_engine_has_options(relation, cfg, e) %}
  {%- if e.engine is none -%}{{ return(none) }}{%- endif -%}{#- the install check says it -#}
  {%- set engine_version = e.engine ~ (' ' ~ e.version if e.version else '') -%}
  {%- set where = "dbt_pgstream: cannot deploy stream_table model '" ~ model.name ~ "' ("
      ~ relation.schema ~ '.' ~ relation.identifier ~ ") on " ~ engine_version ~ ": " -%}
  {%- if cfg.refresh_mode not in e.refresh_modes -%}
    {{ exceptions.raise_compiler_error(where ~ "refresh_mode='" ~ cfg.refresh_mode
        ~ "' is a pg_trickle refresh mode; " ~ engine_version ~ " has '"
        ~ e.refresh_modes | join("' and '") ~ "'. Nothing was changed.") }}
  {%- endif -%}
  {%- if cfg.options and not e.options -%}
    {%- set keys = [] -%}
    {%- for key, value in cfg.options.items() -%}
      {%- do keys.append(key ~ '=' ~ dbt_pgstream._pgstream_show(value)) -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(where ~ keys | join(', ') ~ ": "
        ~ ("these are pg_trickle options" if keys | length > 1 else "this is a pg_trickle option")
        ~ ", which " ~ engine_version ~ " does not have. Remove it from the model's config (or "
        ~ "set it only for targets on pg_trickle). Nothing was changed.") }}
  {%- endif -%}
  {%- set needs = [] -%}
  {%- if cfg.options.get('output_distribution_column') is not none -%}
    {%- do needs.append(['output_distribution_column', 'citus']) -%}
  {%- endif -%}
  {%- if cfg.options.get('storage_backend') in ['citus', 'pg_mooncake'] -%}
    {%- do needs.append(['storage_backend', cfg.options.storage_backend]) -%}
  {%- endif -%}
  {%- for key, extension in needs if extension not in e.extensions -%}
    {{ exceptions.raise_compiler_error(where ~ key ~ "="
        ~ dbt_pgstream._pgstream_show(cfg.options[key]) ~ " needs the " ~ extension
        ~ " extension, which is not installed in database '" ~ target.dbname
        ~ "'. Install it there, or remove the option. Nothing was changed.") }}
  {%- endfor -%}
{% endmacro %}
