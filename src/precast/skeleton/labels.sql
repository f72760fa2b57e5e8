-- The label of every feature row of :snapshot_date (the view `entities`), from the events
-- in (:snapshot_date, :snapshot_date + :horizon_days]. Binds: :snapshot_date (date),
-- :horizon_days (int). Returns the entity key, snapshot_date and `label`: here 1 when the
-- entity has any event in the horizon, else 0 (binary); for a regression target, a number.
SELECT f.entity_id,
       f.snapshot_date,
       CAST(CASE WHEN count(e.entity_id) > 0 THEN 1 ELSE 0 END AS INT) AS label
FROM entities f
LEFT JOIN events e
       ON e.entity_id = f.entity_id
      AND e.dt > f.snapshot_date
      AND e.dt <= date_add(f.snapshot_date, :horizon_days)
GROUP BY f.entity_id, f.snapshot_date
