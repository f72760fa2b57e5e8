-- PostgreSQL bulk load of a snapshot table: precast.store streams each Arrow batch as CSV
-- (no header; strings quoted) in this column order. {{table}}: identifier placeholder, see
-- store_table_create.sql.
COPY {{table}} (
    entity_id, score, snapshot_date, model_name, model_version, data_version, scored_at, snapshot_id
) FROM STDIN WITH (FORMAT csv);
