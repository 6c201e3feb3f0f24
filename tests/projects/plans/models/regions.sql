MODEL (name shop.regions, kind FULL, audits (not_null(columns := (region))));

SELECT region FROM (VALUES ('north'), ('south')) AS t(region)
