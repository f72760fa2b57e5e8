-- Every snapshot in the control table, oldest first.
SELECT snapshot_id, snapshot_date, table_name, model_name, model_version, data_version,
       mlflow_run_id, training_data_version, code_version, fallback_score, row_count,
       created_at, published_at, status, note, activated_at, activated_by, activation_reason
FROM prediction_snapshots
ORDER BY snapshot_id;
