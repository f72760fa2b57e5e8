-- One entity's prediction from the app contract view (the Python client's fast path; an id
-- with no row is answered by lookup_predictions_*.sql, which also names the served snapshot).
SELECT entity_id, score, scored_at, snapshot_id, snapshot_date, model_name, model_version
FROM predictions_current
WHERE entity_id = :entity_id;
