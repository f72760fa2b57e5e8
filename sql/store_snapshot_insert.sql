-- Record a snapshot with its lineage; returns its snapshot id. :status is 'loading' inside the
-- publish transaction (no other session sees the row before it is published), or 'failed'
-- for the audit row written after a publish rolled back (it never has a table).
INSERT INTO prediction_snapshots (
    snapshot_date, model_name, model_version, data_version, mlflow_run_id,
    training_data_version, code_version, fallback_score, created_at, status, note
) VALUES (
    :snapshot_date, :model_name, :model_version, :data_version, :mlflow_run_id,
    :training_data_version, :code_version, :fallback_score, :created_at, :status, :note
)
RETURNING snapshot_id;
