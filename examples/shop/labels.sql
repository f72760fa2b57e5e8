-- Spend label per customer for :snapshot_date: the value of the orders the customer places
-- within (:snapshot_date, :snapshot_date + :horizon_days], 0 when none, as a DOUBLE. Gross:
-- returns are not subtracted (one in the horizon is mostly of an order placed before the
-- snapshot, so a net label could go negative; returns are features instead).
-- Summed as DECIMAL (see features.sql). Customers come from the view `entities` (the
-- features of that snapshot), so every feature row gets a label.
-- Binds: :snapshot_date (date), :horizon_days (int).
SELECT f.customer_id,
       f.snapshot_date,
       CAST(coalesce(sum(CAST(e.order_total AS DECIMAL(20, 6))), 0) AS DOUBLE) AS label
FROM entities f
LEFT JOIN events e
       ON e.customer_id = f.customer_id
      AND e.event_type = 'order'
      AND e.dt > :snapshot_date
      AND e.dt <= date_add(:snapshot_date, :horizon_days)
GROUP BY f.customer_id, f.snapshot_date
