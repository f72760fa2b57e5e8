-- Name the loaded snapshot's table and mark it published; runs in the transaction that repoints
-- the view (store_snapshot_activated.sql follows it there).
UPDATE prediction_snapshots
SET status = 'published', table_name = :table_name, row_count = :row_count,
    published_at = :published_at
WHERE snapshot_id = :snapshot_id AND status = 'loading';
