SELECT order_id, customer_id, amount_cents FROM {{ ref('stg_orders') }}
