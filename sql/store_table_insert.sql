-- SQLite bulk load of a snapshot table (executemany, inside the publish transaction).
-- {{table}}: identifier placeholder, see store_table_create.sql.
INSERT INTO {{table}} (entity_id, score, scored_at) VALUES (:entity_id, :score, :scored_at);
