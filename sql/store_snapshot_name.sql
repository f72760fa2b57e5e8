-- Set the table name of a snapshot just recorded (same transaction as the insert).
UPDATE prediction_snapshots SET table_name = :table_name WHERE snapshot_id = :snapshot_id;
