-- Key a loaded snapshot table (SQLite cannot add a primary key later: a unique index on the
-- NOT NULL column is the same thing); fails on duplicate entity ids.
-- {{table}} and {{table_key}}: identifier placeholders, see store_table_create.sql.
CREATE UNIQUE INDEX {{table_key}} ON {{table}} (entity_id);
