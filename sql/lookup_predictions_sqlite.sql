-- Predictions for a batch of entity ids in ONE statement, so every answer comes from the same
-- snapshot even while a publish or rollback swaps the view: one row per requested id, in
-- request order; score IS NULL means no prediction (the client answers fallback_score).
-- :ids is a JSON array of strings. The hits are an INNER join (SQLite flattens the view into
-- it and uses the key), left-joined back to the ids: a LEFT JOIN straight onto the view would
-- materialise the whole snapshot on every call.
WITH served AS (
    SELECT s.snapshot_id, s.snapshot_date, s.model_name, s.model_version, s.fallback_score
    FROM prediction_snapshots AS s
    WHERE s.snapshot_id = (SELECT v.snapshot_id FROM predictions_current AS v LIMIT 1)
),
ids AS (SELECT key AS position, value AS entity_id FROM json_each(:ids)),
hits AS (
    SELECT ids.position, p.score, p.scored_at
    FROM ids JOIN predictions_current AS p ON p.entity_id = ids.entity_id
)
SELECT ids.entity_id, hits.score, hits.scored_at, served.snapshot_id, served.snapshot_date,
       served.model_name, served.model_version, served.fallback_score
FROM served
CROSS JOIN ids
LEFT JOIN hits ON hits.position = ids.position
ORDER BY ids.position;;
