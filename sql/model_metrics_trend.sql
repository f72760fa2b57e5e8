-- A METRIC OVER TIME: :metric of kind :kind on :feature and :slice, by snapshot, oldest first
-- (for example live roc_auc of every snapshot: kind 'performance', feature 'score', slice '').
SELECT snapshot_date, model_version, value, rows_used, computed_at
FROM model_metrics
WHERE model_name = :model_name AND kind = :kind AND feature = :feature
  AND metric = :metric AND slice = :slice
ORDER BY snapshot_date, computed_at;
