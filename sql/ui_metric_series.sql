-- Every stored figure on the score over all rows of :model_name, oldest first: the metric
-- trends of the precast view (live performance, estimates, score drift).
SELECT snapshot_date, model_version, kind, metric, value
FROM model_metrics
WHERE model_name = :model_name AND feature = 'score' AND slice = ''
ORDER BY snapshot_date, computed_at;
