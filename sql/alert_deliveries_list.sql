-- Every delivery record with its alert, oldest alert first.
SELECT a.snapshot_date, a.rule, a.subject, d.target, d.attempts, d.last_attempt_at,
       d.delivered_at, d.last_error
FROM alert_deliveries d
JOIN alerts a ON a.alert_id = d.alert_id
ORDER BY d.alert_id, d.target;
