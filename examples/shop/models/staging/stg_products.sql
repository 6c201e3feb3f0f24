MODEL (
  name staging.stg_products,
  kind VIEW,
  description 'Cleaned product catalogue.',
  grain product_id,
  tags ('dagster:group_name:staging', 'dagster:owner:team:analytics'),
  audits (
    not_null(columns := (product_id, product_name, category)),
    unique_values(columns := product_id),
    assert_non_negative("column" := list_price)
  )
);

SELECT
  product_id, /* Catalogue product identifier. */
  TRIM(product_name) AS product_name, /* Display name of the product. */
  LOWER(category) AS category, /* Merchandising category (lower-case). */
  list_price /* Current list price in EUR. */
FROM raw.products