MODEL (
  name staging.stg_order_items,
  kind FULL,
  description 'Order lines with line amount and the discount granted against the catalogue list price.',
  grain (order_id, product_id),
  tags ('dagster:group_name:staging', 'dagster:owner:team:analytics'),
  audits (
    not_null(columns := (order_id, product_id, quantity, unit_price)),
    unique_combination_of_columns(columns := (order_id, product_id)),
    accepted_range("column" := quantity, min_v := 1, max_v := 100),
    assert_non_negative("column" := discount_amount)
  )
);

SELECT
  i.order_id, /* Order the line belongs to. */
  i.product_id, /* Product sold on the line. */
  i.quantity, /* Number of units ordered. */
  i.unit_price, /* Price actually charged per unit in EUR. */
  i.quantity * i.unit_price AS line_amount, /* Amount charged for the line in EUR. */
  i.quantity * p.list_price - i.quantity * i.unit_price AS discount_amount /* Discount granted against list price in EUR. */
FROM raw.order_items AS i
JOIN raw.products AS p
  ON i.product_id = p.product_id