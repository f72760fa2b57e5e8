-- A snapshot's table was dropped by retention (same transaction as the DROP).
UPDATE prediction_snapshots SET status = 'retired', note = :note
WHERE snapshot_id = :snapshot_id AND status = 'published';
