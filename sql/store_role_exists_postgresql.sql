-- Does a role exist (precast store setup creates the reader and writer roles when missing)?
SELECT 1 FROM pg_roles WHERE rolname = :role;
