-- A monitor rerun replaces its own rows: those of :snapshot_date, :model_version and :kind.
DELETE FROM model_metrics
WHERE snapshot_date = :snapshot_date AND model_name = :model_name
  AND model_version = :model_version AND kind = :kind;
