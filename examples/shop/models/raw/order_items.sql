MODEL (
  name raw.order_items,
  kind SEED (
    path '../../seeds/order_items.csv'
  ),
  description 'Order lines exported from the storefront, loaded as-is from a CSV seed.',
  grain (order_id, product_id),
  columns (
    order_id INT,
    product_id INT,
    quantity INT,
    unit_price DECIMAL(10, 2)
  ),
  column_descriptions (
    order_id = 'Order the line belongs to.',
    product_id = 'Product sold on the line.',
    quantity = 'Number of units ordered.',
    unit_price = 'Price actually charged per unit in EUR (after line discounts).'
  ),
  audits (
    unique_combination_of_columns(columns := (order_id, product_id))
  )
)