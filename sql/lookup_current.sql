-- The snapshot served by predictions_current (the view is never empty: empty publishes are
-- refused). Fails when no snapshot was ever published (the view does not exist yet).
SELECT snapshot_id, snapshot_date FROM predictions_current LIMIT 1;
