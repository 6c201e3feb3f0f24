MODEL (
  name marts.daily_revenue,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column order_date
  ),
  description 'Daily order volume and revenue; net revenue excludes cancelled and returned orders.',
  grain order_date,
  tags (
    'dagster:group_name:marts',
    'dagster:owner:data@shop.example',
    'dagster:tier:gold',
    'dagster:partitioned:true',
    'finance'
  ),
  audits (
    not_null(columns := (order_date, order_count, gross_revenue, net_revenue)),
    unique_values(columns := order_date),
    assert_non_negative("column" := net_revenue),
    forall_non_blocking(criteria := (net_revenue <= gross_revenue, items_sold >= order_count))
  )
);

SELECT
  o.ordered_at AS order_date, /* Calendar day the orders were placed. */
  COUNT(DISTINCT o.order_id) AS order_count, /* Orders placed that day, whatever their status. */
  SUM(i.quantity) AS items_sold, /* Units sold that day. */
  SUM(i.line_amount) AS gross_revenue, /* Amount of all order lines in EUR. */
  COALESCE(SUM(CASE WHEN o.is_revenue THEN i.line_amount END), 0) AS net_revenue /* Amount of non-cancelled, non-returned order lines in EUR. */
FROM staging.stg_orders AS o
JOIN staging.stg_order_items AS i
  ON o.order_id = i.order_id
WHERE
  o.ordered_at BETWEEN @start_ds AND @end_ds
GROUP BY
  o.ordered_at