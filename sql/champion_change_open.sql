-- The unsettled champion changes of :model_name (interrupted, or in flight), oldest first.
SELECT change_id, model_name, model_version, previous_version, snapshot_id, requested_at,
       decided_by, decision, reason, evidence
FROM champion_changes
WHERE model_name = :model_name AND outcome IS NULL
ORDER BY change_id;
