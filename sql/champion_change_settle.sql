-- Settle one champion change, once: the caller writes its history row in the same
-- transaction only when this updated a row (another process may have settled it first).
UPDATE champion_changes SET outcome = :outcome, settled_at = :at, note = :note
WHERE change_id = :change_id AND outcome IS NULL;
