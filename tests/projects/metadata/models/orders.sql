/* A table with one blocking and one non-blocking audit, both passing on its data. */
MODEL (
  name shop.orders,
  kind FULL,
  audits (
    not_null(columns := (order_id)),
    accepted_range(column := amount, min_v := 0, max_v := 1000, blocking := false)
  )
);

SELECT
  CAST(order_id AS INT) AS order_id,
  CAST(amount AS INT) AS amount
FROM (VALUES (1, 10), (2, 25), (3, 40), (4, 5), (5, 99)) AS t(order_id, amount)
