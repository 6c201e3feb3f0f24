MODEL (
  name part.sizes,
  kind FULL
);

SELECT 1 AS size_id, 'small' AS label
