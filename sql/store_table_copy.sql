-- PostgreSQL bulk load of a snapshot table: precast.store streams the Arrow batches as binary
-- COPY tuples (precast.pgcopy) in this column order. {{table}}: see store_table_create.sql.
COPY {{table}} (entity_id, score, scored_at) FROM STDIN WITH (FORMAT binary);
