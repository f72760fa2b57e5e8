-- Per target: the alerts tried and not accepted yet, the most attempts among them, and the
-- error of the latest failed attempt.
SELECT d.target, COUNT(*) AS alerts, MAX(d.attempts) AS attempts,
       (SELECT e.last_error FROM alert_deliveries e
        WHERE e.target = d.target AND e.delivered_at IS NULL
        ORDER BY e.last_attempt_at DESC, e.alert_id DESC LIMIT 1) AS last_error
FROM alert_deliveries d
WHERE d.delivered_at IS NULL
GROUP BY d.target
ORDER BY d.target;
