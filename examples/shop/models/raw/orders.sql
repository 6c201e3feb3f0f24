MODEL (
  name raw.orders,
  kind SEED (
    path '../../seeds/orders.csv'
  ),
  description 'Order headers exported from the storefront, loaded as-is from a CSV seed.',
  grain order_id,
  columns (
    order_id INT,
    customer_id INT,
    ordered_at DATE,
    status TEXT
  ),
  column_descriptions (
    order_id = 'Storefront order identifier.',
    customer_id = 'Customer who placed the order.',
    ordered_at = 'Date the order was placed.',
    status = 'Fulfilment status: placed, shipped, delivered, cancelled or returned.'
  ),
  audits (
    unique_values(columns := order_id)
  )
)