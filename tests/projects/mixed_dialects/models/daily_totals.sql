MODEL (
  name sales."DailyTotals",
  kind FULL,
  dialect snowflake
);

SELECT
  CAST(day AS DATE) AS day,
  CAST(total AS DECIMAL(10, 2)) AS total
FROM (VALUES ('2026-11-20', 37.75), ('2026-11-21', 12.00)) AS t(day, total)
