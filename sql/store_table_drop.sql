-- Drop a failed or retired snapshot table. {{table}}: identifier placeholder, see
-- store_table_create.sql.
DROP TABLE IF EXISTS {{table}};
