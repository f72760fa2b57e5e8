-- Move a snapshot to another status (failed, retired) and say why in its note.
UPDATE prediction_snapshots SET status = :status, note = :note WHERE snapshot_id = :snapshot_id;
