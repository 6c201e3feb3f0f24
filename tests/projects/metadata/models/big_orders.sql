/* A view: never counted (a count would run its query). */
MODEL (
  name shop.big_orders,
  kind VIEW
);

SELECT order_id, amount FROM shop.orders WHERE amount > 20
