-- Planner statistics for a freshly loaded snapshot table, before it is served.
-- {{table}}: identifier placeholder, see store_table_create.sql.
ANALYZE {{table}};
