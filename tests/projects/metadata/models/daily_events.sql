/* Three rows a day, up to seven days a batch. */
MODEL (
  name shop.daily_events,
  kind INCREMENTAL_BY_TIME_RANGE (time_column event_date, batch_size 7),
  audits (not_null(columns := (event_date)))
);

SELECT
  CAST(d.day AS DATE) AS event_date,
  CAST(r.i AS INT) AS event_id
FROM generate_series(CAST(@start_ds AS DATE), CAST(@end_ds AS DATE), INTERVAL 1 DAY) AS d(day)
CROSS JOIN range(3) AS r(i)
