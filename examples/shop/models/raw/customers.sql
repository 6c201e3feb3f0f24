MODEL (
  name raw.customers,
  kind SEED (
    path '../../seeds/customers.csv'
  ),
  description 'Customer accounts exported from the storefront, loaded as-is from a CSV seed.',
  grain customer_id,
  columns (
    customer_id INT,
    first_name TEXT,
    last_name TEXT,
    email TEXT,
    country_code TEXT,
    signed_up_at DATE
  ),
  column_descriptions (
    customer_id = 'Storefront customer identifier.',
    first_name = 'Given name as typed at sign-up.',
    last_name = 'Family name as typed at sign-up.',
    email = 'Contact e-mail address.',
    country_code = 'ISO 3166-1 alpha-2 shipping country.',
    signed_up_at = 'Date the account was created.'
  ),
  tags (
    pii
  ),
  audits (not_null(columns := (customer_id, email)), unique_values(columns := customer_id))
)