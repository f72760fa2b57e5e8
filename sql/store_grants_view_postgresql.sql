-- For a store published to before `precast store setup`: hand the view to the writer role and
-- let readers select from it. {{writer}}, {{reader}}: see store_grants_postgresql.sql.
ALTER VIEW predictions_current OWNER TO {{writer}};
GRANT SELECT ON predictions_current TO {{reader}};
