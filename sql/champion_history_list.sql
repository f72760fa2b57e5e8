-- Every champion period of :model_name, newest first.
SELECT model_name, model_version, valid_from, valid_to, decided_by, decision, reason, evidence
FROM champion_history
WHERE model_name = :model_name
ORDER BY valid_from DESC, history_id DESC;
