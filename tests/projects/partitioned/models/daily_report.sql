MODEL (
  name part.daily_report,
  kind INCREMENTAL_BY_TIME_RANGE (time_column ds),
  grain ds
);

-- No batch_size: SQLMesh evaluates every missing day of a run in one batch.
SELECT ds, n * 2 AS doubled, now() AS loaded_at
FROM part.daily_totals
WHERE ds BETWEEN @start_ds AND @end_ds
