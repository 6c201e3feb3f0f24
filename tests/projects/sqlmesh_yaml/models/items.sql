MODEL (
  name shapes.items,
  kind FULL,
  audits (not_null(columns := (id)))
);

SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, label)
