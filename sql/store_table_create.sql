-- A new snapshot table. {{table}} is an identifier placeholder (table names cannot be bind
-- parameters): precast.store replaces it with predictions_<snapshot id>, checked against a
-- strict pattern and quoted by the dialect. The key is added after the load (store_table_key_*).
CREATE TABLE {{table}} (
    entity_id TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    snapshot_date DATE NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    data_version TEXT NOT NULL,
    scored_at TIMESTAMP WITH TIME ZONE NOT NULL,
    snapshot_id INTEGER NOT NULL
);
