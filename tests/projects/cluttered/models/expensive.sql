MODEL (name shop.expensive, kind FULL);

SELECT sku, price FROM shop.prices WHERE price > 15
