-- Snapshot dates up to :until with a monitoring alert (drift, live performance, bias).
SELECT DISTINCT snapshot_date
FROM alerts
WHERE snapshot_date <= :until
  AND (rule LIKE 'drift%' OR rule LIKE 'live%' OR rule = 'prediction_bias');
