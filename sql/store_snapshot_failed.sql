-- Record a publish attempt that failed (its own transaction, after the publish rolled back),
-- so the audit trail says what was tried and why it failed. It never had a table.
INSERT INTO prediction_snapshots (
    snapshot_date, model_name, model_version, data_version, mlflow_run_id,
    training_data_version, code_version, fallback_score, created_at, status, note
) VALUES (
    :snapshot_date, :model_name, :model_version, :data_version, :mlflow_run_id,
    :training_data_version, :code_version, :fallback_score, :created_at, 'failed', :note
);
