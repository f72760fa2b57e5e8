-- Raise an alert unless the same (snapshot_date, rule, subject) was raised already.
INSERT INTO alerts (raised_at, snapshot_date, rule, subject, severity, message, value,
                    threshold)
VALUES (:raised_at, :snapshot_date, :rule, :subject, :severity, :message, :value, :threshold)
ON CONFLICT (snapshot_date, rule, subject) DO NOTHING;
