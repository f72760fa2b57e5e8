-- Key a loaded snapshot table (PostgreSQL); fails on duplicate entity ids.
-- {{table}}: identifier placeholder, see store_table_create.sql.
ALTER TABLE {{table}} ADD PRIMARY KEY (entity_id);
