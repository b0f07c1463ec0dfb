{#- Private: grants and persisted docs of a stream table, reconciled from the ONE look-up (no
    `show grants` query, no column query): statements are sent only for what differs. -#}

{#- Look-up column (only when `grants` is configured, else NULL): the table's current grants made
    by the current role to other roles, as dbt's postgres__get_show_grant_sql lists them, as a
    JSON object {privilege (lower case): [grantee, ...]}. -#}
{% macro _pgstream_sql_current_grants(alias='rel') -%}
  {%- if config.get('grants') -%}
  (SELECT pg_catalog.json_object_agg(g.privilege, g.grantees)::text
   FROM (SELECT pg_catalog.lower(a.privilege_type) AS privilege,
                pg_catalog.json_agg(CASE WHEN a.grantee = 0 THEN 'public'
                                         ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END)
                    AS grantees
         FROM pg_catalog.aclexplode({{ alias }}.relacl) AS a
         WHERE a.grantor = (SELECT r.oid FROM pg_catalog.pg_roles AS r
                            WHERE r.rolname = current_role)
           AND a.grantee IS DISTINCT FROM (SELECT r.oid FROM pg_catalog.pg_roles AS r
                                           WHERE r.rolname = current_role)
         GROUP BY 1) AS g)
  {%- else -%}
  NULL::text
  {%- endif -%}
{%- endmacro %}


{#- GRANT / REVOKE statements making the grants equal to the `grants` config (dbt's semantics:
    nothing happens without a `grants` config; a (re)created table starts with none). Grantees
    are compared by the role they designate (_pgstream_grantee_roles), exactly, so a second run
    sends nothing whatever their spelling. -#}
{% macro _pgstream_grants_sql(relation, state, rebuilt) %}
  {%- set grant_config = config.get('grants') or {} -%}
  {%- set statements = [] -%}
  {%- if not grant_config -%}{{ return(statements) }}{%- endif -%}
  {%- set ident = dbt_pgstream._pgstream_ident -%}
  {%- set target = ident(relation.schema) ~ '.' ~ ident(relation.identifier) -%}
  {%- set current = {} if rebuilt else (state.current_grants or {}) -%}
  {%- set wanted = {} -%}
  {%- for privilege, grantees in grant_config.items() -%}
    {%- set roles = wanted.setdefault(privilege | trim | lower, []) -%}
    {%- for grantee in ([grantees] if grantees is string else (grantees or [])) -%}
      {%- for role in dbt_pgstream._pgstream_grantee_roles(grantee, privilege)
            if role not in roles -%}
        {%- do roles.append(role) -%}
      {%- endfor -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- for privilege, roles in current.items() -%}
    {%- set extra = [] -%}
    {%- for role in roles if role not in wanted.get(privilege, []) -%}
      {%- do extra.append('PUBLIC' if role == 'public' else ident(role)) -%}
    {%- endfor -%}
    {%- if extra -%}
      {%- do statements.append('REVOKE ' ~ privilege ~ ' ON ' ~ target ~ ' FROM '
          ~ extra | join(', ')) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- for privilege, roles in wanted.items() -%}
    {%- set missing = [] -%}
    {%- for role in roles if role not in current.get(privilege, []) -%}
      {%- do missing.append('PUBLIC' if role == 'public' else ident(role)) -%}
    {%- endfor -%}
    {%- if missing -%}
      {%- do statements.append('GRANT ' ~ privilege ~ ' ON ' ~ target ~ ' TO '
          ~ missing | join(', ')) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(statements) }}
{% endmacro %}


{#- Private: the role names (exact, as pg_roles spells them; 'public' for PUBLIC) a grantee text
    of the `grants` config designates, read as dbt-postgres reads it: it sends the text as is,
    `GRANT <privilege> ON <table> TO <text>`, so the text is SQL role specifications, separated
    by commas: "Quoted" is the exact name ("" is a quote), unquoted is folded to lower case (ASCII
    letters only, as PostgreSQL does), PUBLIC / "public" is PUBLIC, an optional GROUP before a
    name is ignored, SESSION_USER is the role dbt logs in as. CURRENT_USER / CURRENT_ROLE / USER
    designate the role running dbt, which owns the table: they are left out (dbt's show-grants
    leaves that role out too). Anything else is a compile error naming the model. -#}
{% macro _pgstream_grantee_roles(text, privilege) %}
  {%- set re = modules.re -%}
  {%- set spec = re.compile('\\s*(?:[Gg][Rr][Oo][Uu][Pp]\\s+(?=[^\\s,]))?'
      ~ '(?:"((?:[^"]|"")+)"|([^\\s",]+))\\s*(,|$)') -%}
  {%- set roles = [] -%}
  {%- set state = namespace(pos=0, done=false) -%}
  {%- set text = text | string if text is not none else '' -%}
  {%- set fold = {} -%}
  {%- for code in range(65, 91) -%}{%- do fold.update({code: code + 32}) -%}{%- endfor -%}
  {%- for attempt in range(text | length + 1) -%}
    {%- set found = spec.match(text, state.pos) -%}
    {%- if found is none -%}{%- break -%}{%- endif -%}
    {%- if found.group(1) is not none -%}
      {%- set role = found.group(1).replace('""', '"') -%}
    {%- else -%}
      {%- set word = found.group(2).translate(fold) -%}
      {%- if word in ['current_user', 'current_role', 'user'] -%}
        {%- set role = none -%}
      {%- elif word == 'session_user' -%}
        {%- set role = target.user -%}
      {%- else -%}
        {%- set role = word -%}
      {%- endif -%}
    {%- endif -%}
    {%- if role is not none -%}{%- do roles.append(role) -%}{%- endif -%}
    {%- set state.pos = found.end() -%}
    {%- if found.group(3) == '' -%}
      {%- set state.done = true -%}
      {%- break -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not state.done or state.pos != text | length -%}
    {{ exceptions.raise_compiler_error(
        "dbt_pgstream: invalid config for stream_table model '" ~ model.name ~ "': grants="
        ~ "{'" ~ privilege ~ "': ...} has grantee '" ~ text ~ "', which is not a role "
        ~ "(expected a role name, \"Quoted_Name\" for one needing quotes, PUBLIC, or several "
        ~ "separated by commas, as dbt sends them in GRANT ... TO)") }}
  {%- endif -%}
  {{ return(roles) }}
{% endmacro %}


{#- Look-up column (only when persist_docs is on, else NULL): the table's comment and its
    columns' comments, as JSON {"relation": text, "columns": {name: text}}. -#}
{% macro _pgstream_sql_current_comments(alias='rel') -%}
  {%- if config.persist_relation_docs() or config.persist_column_docs() -%}
  (SELECT pg_catalog.json_build_object(
       'relation', pg_catalog.obj_description({{ alias }}.oid, 'pg_class'),
       'columns', (SELECT pg_catalog.json_object_agg(att.attname,
                              pg_catalog.col_description({{ alias }}.oid, att.attnum))
                   FROM pg_catalog.pg_attribute AS att
                   WHERE att.attrelid = {{ alias }}.oid AND att.attnum > 0
                     AND NOT att.attisdropped))::text)
  {%- else -%}
  NULL::text
  {%- endif -%}
{%- endmacro %}


{#- The comment the engine's row-id column (__pgs_row_id / __pgt_row_id) gets when persist_docs
    is on and the YAML does not describe it. -#}
{% macro _pgstream_row_id_comment() -%}
  {%- set e = dbt_pgstream._pgstream_engine() -%}
  {{ e.extension }}'s internal row identity ({{ e.row_id }}), used by differential refresh. Ignore it.
{%- endmacro %}


{#- COMMENT statements for persist_docs (relation: the model's description; columns: the YAML
    columns' descriptions, and the row-id column's own comment). A (re)created table gets them all (in
    one DO block that skips columns the table does not have); a table left in place gets only the
    ones that differ from the look-up. Comments are never removed (as dbt). -#}
{% macro _pgstream_docs_sql(relation, state, rebuilt) %}
  {%- set statements = [] -%}
  {%- set on_relation = config.persist_relation_docs() -%}
  {%- set on_columns = config.persist_column_docs() -%}
  {%- if not (on_relation or on_columns) -%}{{ return(statements) }}{%- endif -%}
  {%- set lit = dbt_pgstream._pgstream_literal -%}
  {%- set ident = dbt_pgstream._pgstream_ident -%}
  {%- set target = ident(relation.schema) ~ '.' ~ ident(relation.identifier) -%}
  {%- set current = {} if rebuilt else (state.current_comments or {}) -%}
  {%- set current_columns = current.get('columns') or {} -%}
  {%- if on_relation and model.description
        and current.get('relation') != model.description -%}
    {%- do statements.append('COMMENT ON TABLE ' ~ target ~ ' IS ' ~ lit(model.description)) -%}
  {%- endif -%}
  {%- set wanted = {} -%}
  {%- if on_columns -%}
    {%- for name, column in (model.columns or {}).items() if column.description -%}
      {%- do wanted.update({name: column.description}) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set row_id = dbt_pgstream._pgstream_engine().row_id -%}
  {%- if row_id not in wanted -%}
    {%- do wanted.update({row_id: dbt_pgstream._pgstream_row_id_comment()}) -%}
  {%- endif -%}
  {%- set guarded = [] -%}
  {%- for name, text in wanted.items() -%}
    {%- set sql = 'COMMENT ON COLUMN ' ~ target ~ '.' ~ ident(name) ~ ' IS ' ~ lit(text) -%}
    {%- if rebuilt -%}
      {%- do guarded.append('IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = '
          ~ lit(target) ~ '::regclass AND attname = ' ~ lit(name)
          ~ ' AND NOT attisdropped) THEN ' ~ sql ~ '; END IF;') -%}
    {%- elif name in current_columns and current_columns[name] != text -%}
      {%- do statements.append(sql) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if guarded -%}
    {%- do statements.append('DO ' ~ lit('BEGIN ' ~ guarded | join(' ') ~ ' END')) -%}
  {%- endif -%}
  {{ return(statements) }}
{% endmacro %}
