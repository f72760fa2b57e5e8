-- Open alerts: those of the newest snapshot that monitoring looked at (a later monitoring
-- window without them closes them), critical first; at most :limit.
SELECT alert_id, raised_at, snapshot_date, rule, subject, severity, message, value, threshold
FROM alerts
WHERE snapshot_date = COALESCE((SELECT MAX(snapshot_date) FROM model_metrics
                                WHERE model_name = :model_name),
                               (SELECT MAX(snapshot_date) FROM alerts))
ORDER BY severity, alert_id DESC
LIMIT :limit;
