INSERT INTO model_metrics (snapshot_date, model_name, model_version, kind, feature, metric,
                           slice, value, rows_used, computed_at)
VALUES (:snapshot_date, :model_name, :model_version, :kind, :feature, :metric, :slice, :value,
        :rows_used, :computed_at);
