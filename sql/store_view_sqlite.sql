-- THE CONTRACT FOR APPS: predictions_current, one row per entity of the served snapshot.
--   entity_id text (unique), score real, snapshot_date date ('YYYY-MM-DD'), model_name text,
--   model_version text, data_version text, scored_at timestamp ('YYYY-MM-DD HH:MM:SS.ffffff',
--   UTC), snapshot_id integer (joins prediction_snapshots). Entities absent have no prediction.
-- SQLite DDL is transactional: both statements run in the one transaction that also marks the
-- snapshot published, so readers see the old snapshot or the new one, never a mix.
-- {{table}}: identifier placeholder, see store_table_create.sql.
DROP VIEW IF EXISTS predictions_current;
CREATE VIEW predictions_current AS
SELECT entity_id, score, snapshot_date, model_name, model_version, data_version, scored_at,
       snapshot_id
FROM {{table}};
