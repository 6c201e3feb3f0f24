SELECT * FROM (VALUES (1, 1, 10), (2, 2, 25), (3, 1, 40)) AS t(order_id, customer_id, amount)
