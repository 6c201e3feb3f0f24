MODEL (
  name marts.product_sales,
  kind FULL,
  description 'Units sold and revenue per catalogue product, over all revenue orders.',
  grain product_id,
  tags (
    'dagster:group_name:marts',
    'dagster:owner:team:analytics',
    'dagster:tier:silver',
    'dagster:description:Best sellers: units and revenue per product, cancelled and returned orders excluded.'
  ),
  audits (
    not_null(columns := (product_id, units_sold, revenue)),
    unique_values(columns := product_id),
    accepted_values_non_blocking(
      "column" := category,
      is_in := ('kitchen', 'coffee', 'tea', 'equipment', 'accessories', 'gift')
    )
  )
);

SELECT
  p.product_id, /* Catalogue product identifier. */
  p.product_name, /* Display name of the product. */
  p.category, /* Merchandising category. */
  COALESCE(SUM(CASE WHEN o.is_revenue THEN i.quantity END), 0) AS units_sold, /* Units sold on revenue orders. */
  COUNT(DISTINCT CASE WHEN o.is_revenue THEN o.order_id END) AS order_count, /* Revenue orders containing the product. */
  COALESCE(SUM(CASE WHEN o.is_revenue THEN i.line_amount END), 0) AS revenue /* Revenue from the product in EUR. */
FROM staging.stg_products AS p
LEFT JOIN staging.stg_order_items AS i
  ON p.product_id = i.product_id
LEFT JOIN staging.stg_orders AS o
  ON i.order_id = o.order_id
GROUP BY
  p.product_id,
  p.product_name,
  p.category