-- Every snapshot in the control table, oldest first.
SELECT snapshot_id, snapshot_date, table_name, model_name, model_version, data_version,
       row_count, created_at, published_at, status, note
FROM prediction_snapshots
ORDER BY snapshot_id;
