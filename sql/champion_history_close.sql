-- End the open champion period of :model_name at :at (before a new one is inserted).
UPDATE champion_history SET valid_to = :at
WHERE model_name = :model_name AND valid_to IS NULL;
