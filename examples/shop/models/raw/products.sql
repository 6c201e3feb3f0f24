MODEL (
  name raw.products,
  kind SEED (
    path '../../seeds/products.csv'
  ),
  description 'Product catalogue exported from the storefront, loaded as-is from a CSV seed.',
  grain product_id,
  columns (
    product_id INT,
    product_name TEXT,
    category TEXT,
    list_price DECIMAL(10, 2)
  ),
  column_descriptions (
    product_id = 'Catalogue product identifier.',
    product_name = 'Display name of the product.',
    category = 'Merchandising category.',
    list_price = 'Current list price in EUR.'
  ),
  audits (
    unique_values(columns := product_id)
  )
)