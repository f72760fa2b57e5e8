-- Recorded alerts that :target has not accepted yet, oldest first: raised at or after
-- :since and tried fewer than :max_attempts times (older or exhausted ones are given up).
SELECT a.alert_id, a.raised_at, a.snapshot_date, a.rule, a.subject, a.severity, a.message,
       a.value, a.threshold
FROM alerts a
LEFT JOIN alert_deliveries d ON d.alert_id = a.alert_id AND d.target = :target
WHERE d.delivered_at IS NULL
  AND COALESCE(d.attempts, 0) < :max_attempts
  AND a.raised_at >= :since
ORDER BY a.alert_id;
