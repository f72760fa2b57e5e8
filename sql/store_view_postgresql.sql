-- THE CONTRACT FOR APPS: predictions_current, one row per entity of the served snapshot.
--   entity_id text (unique), score double precision, snapshot_date date, model_name text,
--   model_version text, data_version text, scored_at timestamptz, snapshot_id integer
--   (joins prediction_snapshots). Entities absent from the view have no prediction.
-- Repointed in one transaction with the snapshot's status update, so readers see the old
-- snapshot or the new one, never a mix. {{table}}: identifier placeholder, see
-- store_table_create.sql.
CREATE OR REPLACE VIEW predictions_current AS
SELECT entity_id, score, snapshot_date, model_name, model_version, data_version, scored_at,
       snapshot_id
FROM {{table}};
