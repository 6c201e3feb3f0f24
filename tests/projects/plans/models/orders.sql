MODEL (name shop.orders, kind FULL, audits (not_null(columns := (customer_id))));

SELECT order_id, customer_id FROM (VALUES (1, 1), (2, 2)) AS t(order_id, customer_id)
