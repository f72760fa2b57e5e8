-- Serialises the publishers of one store namespace (PostgreSQL: the session's schema) for
-- the rest of the transaction; released at commit or rollback. Readers are not blocked.
SELECT pg_advisory_xact_lock(hashtextextended('precast-publish:' || current_schema(), 0));
