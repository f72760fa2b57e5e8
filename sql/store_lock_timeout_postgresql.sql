-- PostgreSQL: bound how long the view swap may wait for readers' locks (transaction-local).
-- A swap that cannot get the lock in time fails (and the publish is retried) instead of
-- queueing every new lookup behind it.
SET LOCAL lock_timeout = '5s'
