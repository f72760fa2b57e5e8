-- One control table of sql/store_schema.sql, as `precast store setup` hands it over: owned
-- by the writer role (so any member of it can publish, gate, promote, roll back, monitor,
-- alert and run retention), read by the reader role, nothing for anyone else.
-- {{control}}, {{writer}}, {{reader}}: identifier placeholders filled and quoted by precast.store.
ALTER TABLE {{control}} OWNER TO {{writer}};
GRANT SELECT ON {{control}} TO {{reader}};
REVOKE ALL ON {{control}} FROM PUBLIC;
