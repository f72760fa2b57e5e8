-- How many alerts there are in all, and how many are open (see ui_alerts_open.sql).
SELECT COUNT(*) AS total,
       SUM(CASE WHEN snapshot_date = COALESCE((SELECT MAX(snapshot_date) FROM model_metrics
                                               WHERE model_name = :model_name),
                                              (SELECT MAX(snapshot_date) FROM alerts))
                THEN 1 ELSE 0 END) AS open
FROM alerts;
