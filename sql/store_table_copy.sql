-- PostgreSQL bulk load of a snapshot table; rows are streamed with psycopg's COPY write_row
-- in this column order. {{table}}: identifier placeholder, see store_table_create.sql.
COPY {{table}} (
    entity_id, score, snapshot_date, model_name, model_version, data_version, scored_at, snapshot_id
) FROM STDIN;
