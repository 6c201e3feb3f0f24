{{ config(materialized='ephemeral') }}
SELECT order_id, customer_id, {{ shop_utils.to_cents('amount') }} AS amount_cents
FROM {{ ref('raw_orders') }}
