/* A table whose tag opts it out of row counts. */
MODEL (
  name shop.order_totals,
  kind FULL,
  tags ('dagster:row_count:false')
);

SELECT SUM(amount) AS total FROM shop.orders
