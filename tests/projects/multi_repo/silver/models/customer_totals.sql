MODEL (
  name silver.customer_totals,
  kind FULL,
  audits (unique_values(columns := (customer)))
);

SELECT customer, CAST(SUM(amount) AS BIGINT) AS total
FROM bronze.orders
GROUP BY customer
