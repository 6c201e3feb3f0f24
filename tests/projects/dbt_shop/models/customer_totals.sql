{{ config(materialized='view') }}
SELECT customer_id, sum(amount_cents) AS total_cents FROM {{ ref('orders') }} GROUP BY customer_id
