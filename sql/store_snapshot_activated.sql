-- Who made this snapshot the served one, when and why (publish or rollback); same transaction
-- as the view swap, together with a row in prediction_activations (store_activation_insert.sql).
UPDATE prediction_snapshots
SET activated_at = :activated_at, activated_by = :activated_by, activation_reason = :reason
WHERE snapshot_id = :snapshot_id;
