-- order_totals must equal the totals recomputed from raw_orders, in both directions.
WITH expected AS (
    SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
    FROM {{ ref('raw_orders') }}
    GROUP BY customer_id
),
actual AS (
    SELECT customer_id, total_amount, order_count
    FROM {{ ref('order_totals') }}
)
SELECT 'missing from order_totals' AS problem, missing.*
FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual) AS missing
UNION ALL
SELECT 'unexpected in order_totals' AS problem, unexpected.*
FROM (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected) AS unexpected
