-- Predictions for a batch of entity ids in ONE statement, so every answer comes from the same
-- snapshot even while a publish or rollback swaps the view: one row per requested id, in
-- request order; score IS NULL means no prediction (the client answers fallback_score).
-- :ids is a text[] array.
WITH served AS (
    SELECT s.snapshot_id, s.snapshot_date, s.model_name, s.model_version, s.fallback_score
    FROM prediction_snapshots AS s
    WHERE s.snapshot_id = (SELECT v.snapshot_id FROM predictions_current AS v LIMIT 1)
)
SELECT ids.entity_id AS entity_id, p.score, p.scored_at, served.snapshot_id, served.snapshot_date,
       served.model_name, served.model_version, served.fallback_score
FROM served
CROSS JOIN unnest(CAST(:ids AS TEXT[])) WITH ORDINALITY AS ids (entity_id, position)
LEFT JOIN predictions_current AS p ON p.entity_id = ids.entity_id
ORDER BY ids.position;
