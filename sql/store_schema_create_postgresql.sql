-- The use case's schema (PostgreSQL), created by precast.store before its control tables
-- when the session's search_path names a schema that does not exist yet (stores.schema,
-- default: the use case's name). {{schema}} is filled and quoted by precast.store.
CREATE SCHEMA IF NOT EXISTS {{schema}};
