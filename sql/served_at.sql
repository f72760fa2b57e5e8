-- WHAT WAS SERVED AT TIME :at (a UTC timestamp): the snapshot predictions_current pointed at,
-- and who put it there, from the append-only activation history.
SELECT a.snapshot_id, s.snapshot_date, s.model_name, s.model_version, s.status,
       a.activated_at, a.activated_by, a.action, a.reason
FROM prediction_activations AS a
JOIN prediction_snapshots AS s ON s.snapshot_id = a.snapshot_id
WHERE a.activated_at <= :at
ORDER BY a.activated_at DESC, a.activation_id DESC
LIMIT 1;
