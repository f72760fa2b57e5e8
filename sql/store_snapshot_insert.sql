-- Record a new snapshot (status loading) with its lineage; returns its snapshot id. Runs in the
-- publish transaction, so no other session sees the row before it is published.
INSERT INTO prediction_snapshots (
    snapshot_date, model_name, model_version, data_version, mlflow_run_id,
    training_data_version, code_version, fallback_score, created_at, status, note
) VALUES (
    :snapshot_date, :model_name, :model_version, :data_version, :mlflow_run_id,
    :training_data_version, :code_version, :fallback_score, :created_at, 'loading', :note
)
RETURNING snapshot_id;
