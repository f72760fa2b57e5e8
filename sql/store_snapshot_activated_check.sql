-- A rollback's target is still servable (retention may have dropped it since it was chosen).
SELECT snapshot_id FROM prediction_snapshots
WHERE snapshot_id = :snapshot_id AND status = 'published';
