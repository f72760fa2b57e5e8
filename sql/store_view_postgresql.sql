-- THE CONTRACT FOR APPS: predictions_current, one row per entity of the served snapshot:
--   entity_id text (unique), score double precision, snapshot_date date, model_name text,
--   model_version text, data_version text, scored_at timestamptz, snapshot_id integer
--   (joins prediction_snapshots for lineage; see lineage.sql). Entities absent from the view
--   have no prediction in the served snapshot.
-- CREATE OR REPLACE keeps the view's grants. Repointed in the transaction that marks the snapshot
-- published (or rolled back to), so readers see the old snapshot or the new one, never a mix.
-- {{table}} and {{snapshot_id}} are placeholders filled only by precast.store (a checked
-- table name, quoted; the integer id of that table's snapshot).
CREATE OR REPLACE VIEW predictions_current AS
SELECT p.entity_id, p.score, s.snapshot_date, s.model_name, s.model_version, s.data_version,
       p.scored_at, s.snapshot_id
FROM {{table}} AS p
JOIN prediction_snapshots AS s ON s.snapshot_id = {{snapshot_id}};
