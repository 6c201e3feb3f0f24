MODEL (
  name sales.orders,
  kind FULL
);

SELECT
  CAST(id AS INT) AS id,
  CAST(amount AS DECIMAL(10, 2)) AS amount
FROM (VALUES (1, 10.50), (2, 20.00), (3, 7.25)) AS t(id, amount)
