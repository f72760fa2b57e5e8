-- Record the intent of a champion change before the registry alias moves (see store_schema.sql).
INSERT INTO champion_changes (model_name, model_version, previous_version, snapshot_id,
                              requested_at, decided_by, decision, reason, evidence)
VALUES (:model_name, :model_version, :previous_version, :snapshot_id, :at, :decided_by,
        :decision, :reason, :evidence)
RETURNING change_id, requested_at;
