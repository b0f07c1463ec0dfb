{#- SQL for a hook that refreshes a stream table right away, e.g. on a model built with
    initialize=false, or after loading its sources:
        post_hook: "{{ dbt_pgstream.refresh_after_build() }}"      -- this model's stream table
        on-run-end: "{{ dbt_pgstream.refresh_after_build(ref('order_totals')) }}"
    `relation` defaults to `this`. Runs inside dbt's hook statement; raises if the stream
    table does not exist or is SUSPENDED. -#}
{% macro refresh_after_build(relation=none) -%}
  {{ return(adapter.dispatch('refresh_after_build', 'dbt_pgstream')(relation)) }}
{%- endmacro %}

{% macro default__refresh_after_build(relation) -%}
  {{ dbt_pgstream.refresh_stream_table(relation if relation is not none else this) }}
{%- endmacro %}
