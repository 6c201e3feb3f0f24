MODEL (
  name part.events,
  kind INCREMENTAL_BY_TIME_RANGE (time_column ds, batch_size 1),
  grain (id, ds),
  audits (not_null(columns := (id, ds)))
);

-- Three rows a day; the day fails when control.fail_days lists it.
SELECT
  CASE WHEN f.n > 0 THEN error('planned failure of ' || @start_ds) ELSE r.range END AS id,
  CAST(@start_ds AS DATE) AS ds,
  now() AS loaded_at
FROM range(3) AS r
CROSS JOIN (
  SELECT COUNT(*) AS n FROM control.fail_days WHERE ds BETWEEN @start_ds AND @end_ds
) AS f
