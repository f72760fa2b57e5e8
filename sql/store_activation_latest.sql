-- The snapshot served before this swap: the newest activation (read after taking the view's
-- lock, so concurrent swaps see each other's history in order).
SELECT snapshot_id FROM prediction_activations ORDER BY activation_id DESC LIMIT 1;
