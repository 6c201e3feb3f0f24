-- A standalone audit: it belongs to no model and reads two (SQLMesh: never blocking).
AUDIT (name payments_match_orders, standalone true);

SELECT p.order_id
FROM raw.payments AS p
LEFT JOIN shop.orders AS o ON o.order_id = p.order_id
WHERE o.order_id IS NULL
