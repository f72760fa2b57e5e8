-- Published (servable) snapshots, newest first: retention keeps the head of this list.
SELECT snapshot_id, table_name
FROM prediction_snapshots
WHERE status = 'published'
ORDER BY snapshot_id DESC;
