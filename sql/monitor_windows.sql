-- The monitored windows (snapshot dates with drift rows) of :model_name up to :until, newest
-- first: the windows the retrain rule counts over.
SELECT DISTINCT snapshot_date
FROM model_metrics
WHERE model_name = :model_name AND kind = 'drift' AND snapshot_date <= :until
ORDER BY snapshot_date DESC;
