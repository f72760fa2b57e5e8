-- A group role (no login): people and services log in as their own roles, granted this one.
-- {{role}}: identifier placeholder filled and quoted by precast.store.
CREATE ROLE {{role}} NOLOGIN;
