-- ROW-LEVEL LINEAGE: which data, code and parameters produced the score an app was served.
-- One row per served entity id (:entity_id). Follow mlflow_run_id into MLflow for the training
-- parameters and metrics; model_name/model_version is the registered model; training_data_version
-- and data_version are the content hashes of the training and inference feature datasets (their
-- manifests are in the lake); code_version is the git commit that trained the model.
SELECT p.entity_id, p.score, s.snapshot_id, s.model_name, s.model_version, s.mlflow_run_id,
       s.training_data_version, s.data_version, s.code_version, p.scored_at, s.snapshot_date,
       s.published_at, s.activated_at, s.activated_by, s.activation_reason
FROM predictions_current AS p
JOIN prediction_snapshots AS s ON s.snapshot_id = p.snapshot_id
WHERE p.entity_id = :entity_id;
