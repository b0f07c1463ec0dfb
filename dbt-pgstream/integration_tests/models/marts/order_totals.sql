{#- The schedule and a second version of the query come from vars, so the end-to-end test can
    change them without editing files:
      --vars '{order_totals_schedule: 5m}'   --vars '{order_totals_version: 2}' -#}
{{ config(
    materialized='stream_table',
    schedule=var('order_totals_schedule', '1m'),
    refresh_mode='DIFFERENTIAL',
) }}

SELECT
    customer_id,
    SUM(amount) AS total_amount,
    COUNT(*) AS order_count
    {%- if var('order_totals_version', 1) | int >= 2 %},
    MAX(amount) AS max_amount
    {%- endif %}
FROM {{ ref('raw_orders') }}
GROUP BY customer_id
