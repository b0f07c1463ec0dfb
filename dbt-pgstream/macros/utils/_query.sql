{#- Private: the defining query of a model as the engine and every query the package builds from it
    must see it: the compiled SQL without outer whitespace, without trailing statement
    terminators (`;`) and without trailing comments (`-- ...`, `/* ... */`), however they are
    mixed. The stored query is embedded in subqueries (stream_table_matches_query, the engines'
    own delta queries), where a `;` is a syntax error and a trailing `--` comment swallows the
    closing parenthesis; pg_stream 0.1 also fails on a trailing `;`.
    Only whole tokens are removed: a `;` or `--` inside a string literal, a quoted identifier
    or a dollar-quoted string is text, not a terminator.
    Args: sql (text). Returns text. -#}
{% macro _pgstream_query_text(sql) %}
  {%- set tokens = dbt_pgstream._pgstream_sql_tokens(sql | string) -%}
  {%- set state = namespace(keep=tokens | length) -%}
  {%- for token in tokens | reverse -%}
    {%- if state.keep == loop.revindex and (token | trim == '' or token == ';'
          or token.startswith('--') or token.startswith('/*')) -%}
      {%- set state.keep = state.keep - 1 -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(tokens[:state.keep] | join('') | trim) }}
{% endmacro %}


{#- Private: `sql` cut into tokens that keep every character: string literals ('...', E'...'),
    quoted identifiers, dollar-quoted strings, comments, `;`, whitespace runs and runs of other
    text. Joining the tokens gives `sql` back. (The dollar-quote tag group matches the empty tag
    too: in Python's re a back-reference to a group that did not take part never matches, which
    made `$$...$$` run to the end of the text.) -#}
{% macro _pgstream_sql_tokens(sql) %}
  {%- set pattern = "[Ee]'(?:[^'\\\\]|\\\\.|'')*'?"
      ~ "|'(?:[^']|'')*'?"
      ~ '|"(?:[^"]|"")*"?'
      ~ "|\\$([A-Za-z_][A-Za-z0-9_]*|)\\$[\\s\\S]*?(?:\\$\\1\\$|$)"
      ~ "|--[^\\n]*"
      ~ "|/\\*[\\s\\S]*?(?:\\*/|$)"
      ~ "|;"
      ~ "|\\s+"
      ~ "|[^'\"$;\\s/\\-Ee]+"
      ~ "|[\\s\\S]" -%}
  {%- set tokens = [] -%}
  {%- for match in modules.re.finditer(pattern, sql) -%}
    {%- do tokens.append(match.group(0)) -%}
  {%- endfor -%}
  {{ return(tokens) }}
{% endmacro %}
