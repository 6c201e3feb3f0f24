MODEL (
  name marts.payment_reconciliation,
  kind FULL,
  description 'Matches every captured payment from the payment provider against the shop order it settles.',
  grain transaction_id,
  tags (
    'dagster:group_name:marts',
    'dagster:owner:data@shop.example',
    'dagster:kind:finance',
    'finance'
  ),
  audits (
    not_null(columns := (transaction_id, paid_amount, reconciliation_status)),
    unique_values(columns := transaction_id),
    accepted_values(
      "column" := reconciliation_status,
      is_in := ('matched', 'amount_mismatch', 'unknown_order'),
      blocking := FALSE
    )
  )
);

WITH order_totals AS (
  SELECT
    order_id,
    SUM(line_amount) AS order_total
  FROM staging.stg_order_items
  GROUP BY
    order_id
)
SELECT
  t.transaction_id, /* Provider transaction identifier. */
  t.order_id, /* Shop order the payment settles. */
  t.payment_method, /* One of card, paypal, bank_transfer. */
  t.paid_at, /* When the payment was captured (UTC). */
  t.amount AS paid_amount, /* Captured amount in EUR. */
  o.order_total, /* Amount of the order lines in EUR, NULL when the order is unknown. */
  t.amount - o.order_total AS amount_difference, /* Paid minus ordered in EUR. */
  CASE
    WHEN o.order_id IS NULL
    THEN 'unknown_order'
    WHEN t.amount = o.order_total
    THEN 'matched'
    ELSE 'amount_mismatch'
  END AS reconciliation_status /* matched, amount_mismatch or unknown_order. */
FROM payments.transactions AS t
LEFT JOIN order_totals AS o
  ON t.order_id = o.order_id