-- One duplicated entity id (and how often it occurs) when keying a snapshot table failed.
-- {{table}}: identifier placeholder, see store_table_create.sql.
SELECT entity_id, COUNT(*) AS copies
FROM {{table}}
GROUP BY entity_id
HAVING COUNT(*) > 1
ORDER BY entity_id
LIMIT 1;
