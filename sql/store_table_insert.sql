-- SQLite bulk load of a snapshot table (executemany, one transaction).
-- {{table}}: identifier placeholder, see store_table_create.sql.
INSERT INTO {{table}} (
    entity_id, score, snapshot_date, model_name, model_version, data_version, scored_at, snapshot_id
) VALUES (
    :entity_id, :score, :snapshot_date, :model_name, :model_version, :data_version, :scored_at,
    :snapshot_id
);
