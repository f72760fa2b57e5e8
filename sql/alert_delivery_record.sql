-- One delivery attempt of alert :alert_id to :target: :delivered_at is NULL when it failed,
-- with the redacted reason in :last_error.
INSERT INTO alert_deliveries (alert_id, target, attempts, last_attempt_at, delivered_at,
                              last_error)
VALUES (:alert_id, :target, 1, :attempted_at, :delivered_at, :last_error)
ON CONFLICT (alert_id, target) DO UPDATE SET
    attempts = alert_deliveries.attempts + 1,
    last_attempt_at = excluded.last_attempt_at,
    delivered_at = excluded.delivered_at,
    last_error = excluded.last_error;
