-- A new snapshot table: only what differs per row. Everything constant for the snapshot
-- (date, model, versions, lineage) lives once in prediction_snapshots and reaches readers
-- through the predictions_current view. {{table}} is an identifier placeholder (table names
-- cannot be bind parameters): precast.store replaces it with predictions_<snapshot id>, checked
-- against a strict pattern and quoted by the dialect. The key is added after the load.
CREATE TABLE {{table}} (
    entity_id TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    scored_at TIMESTAMP WITH TIME ZONE NOT NULL
);
