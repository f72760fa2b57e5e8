-- The newest :limit alerts, newest first (the precast view in Airflow).
SELECT alert_id, raised_at, snapshot_date, rule, subject, severity, message, value, threshold
FROM alerts
ORDER BY alert_id DESC
LIMIT :limit;
