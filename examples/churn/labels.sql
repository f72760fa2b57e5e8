-- Churn label per entity for :snapshot_date: 1 when the entity emits a cancel event
-- within (:snapshot_date, :snapshot_date + :horizon_days], else 0. Entities come from
-- the view `entities` (the features of that snapshot), so every feature row gets a label.
-- Binds: :snapshot_date (date), :horizon_days (int).
SELECT f.user_id,
       f.snapshot_date,
       CAST(coalesce(max(CASE WHEN e.event_type = 'cancel' THEN 1 ELSE 0 END), 0) AS INT) AS label
FROM entities f
LEFT JOIN events e
       ON e.user_id = f.user_id
      AND e.dt > :snapshot_date
      AND e.dt <= date_add(:snapshot_date, :horizon_days)
GROUP BY f.user_id, f.snapshot_date
