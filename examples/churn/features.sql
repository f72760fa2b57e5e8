-- Per-entity features as of the end of :snapshot_date, read from the view `events`
-- (clean events, one row per event, partition column dt).
-- Entities: users with at least one event in the long window and no cancel on or
-- before the snapshot. Windows are (:snapshot_date - N days, :snapshot_date].
-- Binds: :snapshot_date (date), :short_days, :long_days (int).
WITH history AS (
    SELECT user_id,
           min(dt) AS first_dt,
           max(dt) AS last_dt,
           max(CASE WHEN event_type = 'cancel' THEN 1 ELSE 0 END) AS cancelled
    FROM events
    WHERE dt <= :snapshot_date
    GROUP BY user_id
),
recent AS (
    SELECT *, dt > date_sub(:snapshot_date, :short_days) AS in_short
    FROM events
    WHERE dt <= :snapshot_date AND dt > date_sub(:snapshot_date, :long_days)
),
latest AS (
    SELECT user_id, plan, device, country
    FROM (
        SELECT user_id, plan, device, country,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, event_id DESC) AS rn
        FROM recent
    )
    WHERE rn = 1
),
agg AS (
    SELECT user_id,
           count_if(event_type = 'session_start' AND in_short) AS sessions_7d,
           count_if(event_type = 'session_start') AS sessions_30d,
           count_if(event_type = 'page_view' AND in_short) AS page_views_7d,
           count_if(event_type = 'play' AND in_short) AS plays_7d,
           count_if(event_type = 'play') AS plays_30d,
           count_if(event_type = 'purchase') AS purchases_30d,
           -- summed as DECIMAL: a sum of doubles depends on the order Spark adds them in
           -- (partitioning), so training and scoring could differ in the last bit
           CAST(coalesce(sum(CASE WHEN event_type = 'purchase'
                                  THEN CAST(amount AS DECIMAL(20, 6)) END), 0) AS DOUBLE)
               AS spend_30d,
           count_if(event_type = 'support_ticket') AS support_tickets_30d,
           count_if(event_type = 'plan_change') AS plan_changes_30d,
           count(DISTINCT CASE WHEN in_short THEN dt END) AS active_days_7d,
           count(DISTINCT dt) AS active_days_30d
    FROM recent
    GROUP BY user_id
)
SELECT a.user_id,
       CAST(:snapshot_date AS DATE) AS snapshot_date,
       CAST(a.sessions_7d AS BIGINT) AS sessions_7d,
       CAST(a.sessions_30d AS BIGINT) AS sessions_30d,
       CAST(a.page_views_7d AS BIGINT) AS page_views_7d,
       CAST(a.plays_7d AS BIGINT) AS plays_7d,
       CAST(a.plays_30d AS BIGINT) AS plays_30d,
       CAST(a.purchases_30d AS BIGINT) AS purchases_30d,
       CAST(a.spend_30d AS DOUBLE) AS spend_30d,
       CAST(a.support_tickets_30d AS BIGINT) AS support_tickets_30d,
       CAST(a.plan_changes_30d AS BIGINT) AS plan_changes_30d,
       CAST(a.active_days_7d AS BIGINT) AS active_days_7d,
       CAST(a.active_days_30d AS BIGINT) AS active_days_30d,
       CAST(datediff(:snapshot_date, h.last_dt) AS BIGINT) AS days_since_last_event,
       CAST(datediff(:snapshot_date, h.first_dt) AS BIGINT) AS tenure_days,
       l.plan,
       l.device,
       l.country
FROM agg a
JOIN history h ON h.user_id = a.user_id
JOIN latest l ON l.user_id = a.user_id
WHERE h.cancelled = 0
