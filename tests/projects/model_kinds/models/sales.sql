MODEL (name shop.sales, kind FULL, audits (not_null(columns := (price))));

SELECT s.item, s.qty, p.price FROM shop.sales_raw AS s JOIN shop.prices AS p USING (item)
