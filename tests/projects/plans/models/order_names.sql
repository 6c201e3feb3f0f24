MODEL (name shop.order_names, kind FULL);

SELECT o.order_id, c.name FROM shop.orders AS o JOIN shop.customers AS c USING (customer_id)
