-- The snapshot predictions_current serves, with its control row (health checks, status).
-- Fails when no snapshot was ever published (the view does not exist yet).
SELECT s.snapshot_id, s.snapshot_date, s.model_name, s.model_version, s.data_version,
       s.fallback_score, s.row_count, s.published_at, s.activated_at, s.activated_by
FROM prediction_snapshots AS s
WHERE s.snapshot_id = (SELECT v.snapshot_id FROM predictions_current AS v LIMIT 1);
