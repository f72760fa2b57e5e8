-- Record a new publish attempt (status loading); returns its snapshot id.
INSERT INTO prediction_snapshots (
    snapshot_date, model_name, model_version, data_version, created_at, status, note
) VALUES (
    :snapshot_date, :model_name, :model_version, :data_version, :created_at, 'loading', :note
)
RETURNING snapshot_id;
