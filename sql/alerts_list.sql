-- Every recorded alert, oldest first.
SELECT snapshot_date, rule, subject, severity, message, value, threshold
FROM alerts
ORDER BY alert_id;
