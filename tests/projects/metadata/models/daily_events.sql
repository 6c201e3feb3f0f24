/* Three rows a day, up to seven days a batch. */
MODEL (
  name shop.daily_events,
  kind INCREMENTAL_BY_TIME_RANGE (time_column event_date, batch_size 7),
  audits (not_null(columns := (event_date)))
);

SELECT
  CAST(@start_ds AS DATE) AS event_date,
  CAST(i AS INT) AS event_id
FROM range(3) AS r(i)
