-- Run dates up to :until on which precast_monitor asked for a retraining (recorded as the
-- alert rule retrain_requested, subject the model name), newest first: the cool-down's start.
SELECT DISTINCT snapshot_date
FROM alerts
WHERE rule = 'retrain_requested' AND subject = :model_name AND snapshot_date <= :until
ORDER BY snapshot_date DESC;
