MODEL (
  name bronze.orders,
  kind FULL,
  audits (not_null(columns := (order_id)))
);

SELECT * FROM (VALUES (1, 'a', 10), (2, 'b', 25), (3, 'a', 40)) AS t(order_id, customer, amount)
