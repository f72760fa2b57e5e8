-- Hand an existing snapshot table to the writer role (so retention, run as it, can drop it).
-- {{table}}, {{writer}}: identifier placeholders filled and quoted by precast.store.
ALTER TABLE {{table}} OWNER TO {{writer}};
