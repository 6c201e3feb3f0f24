MODEL (name shop.paid_orders, kind FULL);

SELECT o.order_id, o.amount, p.amount AS paid
FROM shop.orders AS o
JOIN raw.payments AS p ON p.order_id = o.order_id
