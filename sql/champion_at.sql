-- WHICH MODEL VERSION WAS THE CHAMPION of :model_name AT TIME :at (a UTC timestamp), who
-- decided it, why, and the evidence (for example the gate's report).
SELECT model_name, model_version, valid_from, valid_to, decided_by, decision, reason, evidence
FROM champion_history
WHERE model_name = :model_name AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
ORDER BY valid_from DESC, history_id DESC
LIMIT 1;
