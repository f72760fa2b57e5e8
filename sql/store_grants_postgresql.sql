-- DATABASE ROLES (PostgreSQL), applied by `precast store setup` as an administrator:
--   {{writer}}: the pipeline's role. Owns the control tables (store_control_grants_postgresql.sql),
--     every snapshot table and the view (set stores.writer_role so whatever precast creates
--     is created as it: SET ROLE). Every step's writes work for any member of it.
--   {{reader}}: apps and the lookup API. SELECT on predictions_current and the control tables
--     only (the view reads its snapshot table with the owner's rights); no writes, no DDL.
-- Log in as your own roles and GRANT these to them, e.g.
--   CREATE ROLE lookup_api LOGIN PASSWORD '...' IN ROLE precast_reader;
-- {{schema}}, {{writer}}, {{reader}}: identifier placeholders filled and quoted by precast.store.
GRANT USAGE, CREATE ON SCHEMA {{schema}} TO {{writer}};
GRANT USAGE ON SCHEMA {{schema}} TO {{reader}};
ALTER DEFAULT PRIVILEGES FOR ROLE {{writer}} IN SCHEMA {{schema}}
    GRANT SELECT ON TABLES TO {{reader}};
