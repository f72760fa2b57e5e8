-- PostgreSQL: bound how long the view swap (and retention's DROP) may wait for readers' locks,
-- for the rest of the transaction. A swap that cannot get its lock in time is retried from a
-- savepoint after a pause, instead of queueing every new lookup behind it. :timeout is text
-- such as '1000ms'.
SELECT set_config('lock_timeout', :timeout, true);
