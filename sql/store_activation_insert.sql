-- Append to the serving history (same transaction as the view swap).
INSERT INTO prediction_activations (
    snapshot_id, previous_snapshot_id, activated_at, activated_by, action, reason
) VALUES (
    :snapshot_id, :previous_snapshot_id, :activated_at, :activated_by, :action, :reason
);
