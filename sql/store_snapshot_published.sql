-- Mark a loaded snapshot published; runs in the same transaction that repoints the view.
UPDATE prediction_snapshots
SET status = 'published', row_count = :row_count, published_at = :published_at
WHERE snapshot_id = :snapshot_id AND status = 'loading';
