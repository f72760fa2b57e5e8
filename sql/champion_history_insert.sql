-- Open a champion period for :model_name :model_version from :at.
INSERT INTO champion_history (model_name, model_version, valid_from, valid_to, decided_by,
                              decision, reason, evidence)
VALUES (:model_name, :model_version, :at, NULL, :decided_by, :decision, :reason, :evidence);
