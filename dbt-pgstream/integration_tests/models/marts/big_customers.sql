{#- A stream table reading a stream table: replaced whenever order_totals is replaced. -#}
{{ config(materialized='stream_table', schedule=none, refresh_mode='FULL') }}

SELECT customer_id, total_amount
FROM {{ ref('order_totals') }}
WHERE total_amount >= 20
