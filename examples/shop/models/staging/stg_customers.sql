MODEL (
  name staging.stg_customers,
  kind VIEW,
  description 'Cleaned customers: trimmed names, lower-cased e-mails, upper-cased country codes.',
  grain customer_id,
  tags ('dagster:group_name:staging', 'dagster:owner:team:analytics', 'pii'),
  audits (
    not_null(columns := (customer_id, email)),
    unique_values(columns := (customer_id, email))
  )
);

SELECT
  customer_id, /* Storefront customer identifier. */
  TRIM(first_name) || ' ' || TRIM(last_name) AS full_name, /* Display name of the customer. */
  LOWER(TRIM(email)) AS email, /* Normalised (lower-case) contact e-mail. */
  UPPER(country_code) AS country_code, /* ISO 3166-1 alpha-2 shipping country. */
  signed_up_at /* Date the account was created. */
FROM raw.customers