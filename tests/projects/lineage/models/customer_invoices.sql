MODEL (
  name crm.customer_invoices,
  kind FULL,
  cron '0 6 * * 1-5'
);

WITH totals AS (
  SELECT
    customer_id,
    SUM(amount) AS total
  FROM billing.invoices
  GROUP BY customer_id
)
SELECT
  c.customer_id,
  UPPER(c.customer_name) AS customer_name,
  t.total AS invoiced_total,
  t.total * 1.2 AS invoiced_total_with_tax,
  1 AS one
FROM crm.customers AS c
LEFT JOIN totals AS t
  ON c.customer_id = t.customer_id
