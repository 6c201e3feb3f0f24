MODEL (
  name part.daily_totals,
  kind INCREMENTAL_BY_TIME_RANGE (time_column ds, batch_size 1),
  grain ds
);

SELECT ds, COUNT(*) AS n, now() AS loaded_at
FROM part.events
WHERE ds BETWEEN @start_ds AND @end_ds
GROUP BY ds
