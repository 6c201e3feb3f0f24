MODEL (
  name staging.stg_orders,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column ordered_at
  ),
  description 'Order headers, loaded incrementally one day at a time, with a revenue flag derived from the status.',
  grain order_id,
  tags ('dagster:group_name:staging', 'dagster:owner:team:analytics'),
  audits (
    not_null(columns := (order_id, customer_id, ordered_at, status)),
    unique_values(columns := order_id),
    accepted_values(
      "column" := status,
      is_in := ('placed', 'shipped', 'delivered', 'cancelled', 'returned')
    )
  )
);

SELECT
  order_id, /* Storefront order identifier. */
  customer_id, /* Customer who placed the order. */
  ordered_at, /* Date the order was placed. */
  LOWER(status) AS status, /* Fulfilment status: placed, shipped, delivered, cancelled or returned. */
  NOT LOWER(status) IN ('cancelled', 'returned') AS is_revenue /* True when the order counts towards revenue. */
FROM raw.orders
WHERE
  ordered_at BETWEEN @start_ds AND @end_ds