MODEL (name shop.orders, kind FULL);

SELECT * FROM (VALUES (1, 10), (2, 25)) AS t(order_id, amount)
