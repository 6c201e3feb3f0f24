MODEL (name shop.sales_view, kind VIEW);

SELECT item, qty * price AS revenue FROM shop.sales
