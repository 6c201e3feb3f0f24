MODEL (name shop.sales_raw, kind EMBEDDED);

SELECT item, qty FROM (VALUES ('apple', 1), ('pear', 4)) AS t(item, qty)
