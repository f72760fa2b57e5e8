-- Features of every entity as of the end of :snapshot_date, one row per entity, read from
-- the view `events` (the clean columns of this use case's mapping, and the dt partition).
-- Binds: :snapshot_date (date), :short_days, :long_days (int). Windows are
-- (:snapshot_date - N days, :snapshot_date]. The first column is the entity key, then
-- snapshot_date; every other column is a feature.
SELECT entity_id,
       CAST(:snapshot_date AS DATE) AS snapshot_date,
       CAST(count_if(dt > date_sub(:snapshot_date, :short_days)) AS BIGINT) AS events_short,
       CAST(count(*) AS BIGINT) AS events_long,
       CAST(count(DISTINCT dt) AS BIGINT) AS active_days_long,
       CAST(coalesce(sum(amount), 0) AS DOUBLE) AS amount_long,
       CAST(datediff(:snapshot_date, max(dt)) AS BIGINT) AS days_since_last_event
FROM events
WHERE dt <= :snapshot_date AND dt > date_sub(:snapshot_date, :long_days)
GROUP BY entity_id
