MODEL (
  name crm.customers,
  kind FULL,
  cron '@hourly',
  cron_tz 'Europe/Paris',
  tags ('dagster:freshness:cron')
);

SELECT
  CAST(id AS INT) AS customer_id,
  CAST(name AS VARCHAR) AS customer_name
FROM (VALUES (1, 'Ada'), (2, 'Linus')) AS t(id, name)
