-- PostgreSQL: the sessions holding a lock on predictions_current (what a swap waits behind),
-- for the error message when a swap gives up.
SELECT a.pid, a.usename, a.state, a.xact_start, left(a.query, 120) AS query
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.relation = to_regclass('predictions_current') AND l.granted
  AND l.pid <> pg_backend_pid()
ORDER BY a.xact_start;
