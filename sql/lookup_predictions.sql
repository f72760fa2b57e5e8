-- Predictions for a batch of entity ids from the app contract view; :ids is an expanding
-- bind parameter (IN list). Ids with no row have no prediction.
SELECT entity_id, score, model_version, snapshot_id, snapshot_date, scored_at
FROM predictions_current
WHERE entity_id IN :ids;
