-- DATABASE ROLES (PostgreSQL), applied by `precast store setup` as an administrator:
--   {{writer}}: the publish role. Owns the control tables, every snapshot table and the view
--     (set stores.writer_role so publish, rollback and retention act as it: SET ROLE).
--   {{reader}}: apps and the lookup API. SELECT on predictions_current and the control tables
--     only (the view reads its snapshot table with the owner's rights); no writes, no DDL.
-- Log in as your own roles and GRANT these to them, e.g.
--   CREATE ROLE lookup_api LOGIN PASSWORD '...' IN ROLE precast_reader;
-- {{schema}}, {{writer}}, {{reader}}: identifier placeholders filled and quoted by precast.store.
GRANT USAGE, CREATE ON SCHEMA {{schema}} TO {{writer}};
GRANT USAGE ON SCHEMA {{schema}} TO {{reader}};
ALTER TABLE prediction_snapshots OWNER TO {{writer}};
ALTER TABLE prediction_activations OWNER TO {{writer}};
GRANT SELECT ON prediction_snapshots, prediction_activations TO {{reader}};
REVOKE ALL ON prediction_snapshots, prediction_activations FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE {{writer}} IN SCHEMA {{schema}}
    GRANT SELECT ON TABLES TO {{reader}};
