MODEL (
  name marts.customer_orders,
  kind FULL,
  description 'One row per customer with order counts, lifetime revenue and first / last order dates.',
  grain customer_id,
  tags (
    'dagster:group_name:marts',
    'dagster:owner:team:analytics',
    'dagster:tier:gold',
    'pii'
  ),
  audits (
    not_null(columns := (customer_id, order_count, lifetime_revenue)),
    unique_values(columns := customer_id),
    accepted_range("column" := lifetime_revenue, min_v := 0, blocking := FALSE)
  )
);

WITH order_totals AS (
  SELECT
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.is_revenue,
    SUM(i.line_amount) AS order_total
  FROM staging.stg_orders AS o
  JOIN staging.stg_order_items AS i
    ON o.order_id = i.order_id
  GROUP BY
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.is_revenue
)
SELECT
  c.customer_id, /* Storefront customer identifier. */
  c.full_name, /* Display name of the customer. */
  c.country_code, /* ISO 3166-1 alpha-2 shipping country. */
  COUNT(t.order_id) AS order_count, /* Orders placed, whatever their status. */
  COUNT(CASE WHEN t.is_revenue THEN t.order_id END) AS revenue_order_count, /* Orders that count towards revenue. */
  COALESCE(SUM(CASE WHEN t.is_revenue THEN t.order_total END), 0) AS lifetime_revenue, /* Revenue from non-cancelled, non-returned orders in EUR. */
  MIN(t.ordered_at) AS first_order_date, /* Date of the first order, NULL when the customer never ordered. */
  MAX(t.ordered_at) AS last_order_date /* Date of the latest order, NULL when the customer never ordered. */
FROM staging.stg_customers AS c
LEFT JOIN order_totals AS t
  ON c.customer_id = t.customer_id
GROUP BY
  c.customer_id,
  c.full_name,
  c.country_code