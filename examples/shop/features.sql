-- Per-customer features of the shop as of the end of :snapshot_date, read from the view
-- `events` (clean events: event_id, customer_id, ts, event_type, order_total, items,
-- category, discount, device, channel, dt).
-- Entities: customers with at least one event in the long window. Windows are
-- (:snapshot_date - N days, :snapshot_date]; the "to date" values (tenure, recency, average
-- order value, favourite category) read every day up to the snapshot.
-- Money is summed as DECIMAL: a sum of doubles depends on the order Spark adds them in
-- (partitioning), so training and scoring could differ in the last bit.
-- Binds: :snapshot_date (date), :short_days, :long_days (int).
WITH history AS (
    SELECT customer_id,
           min(dt) AS first_dt,
           max(dt) AS last_dt,
           max(CASE WHEN event_type = 'order' THEN dt END) AS last_order_dt,
           count_if(event_type = 'order') AS orders_to_date,
           sum(CASE WHEN event_type = 'order'
                    THEN CAST(order_total AS DECIMAL(20, 6)) END) AS spend_to_date
    FROM events
    WHERE dt <= :snapshot_date
    GROUP BY customer_id
),
category_spend AS (
    SELECT customer_id, category, sum(CAST(order_total AS DECIMAL(20, 6))) AS spend
    FROM events
    WHERE dt <= :snapshot_date AND event_type = 'order' AND category IS NOT NULL
    GROUP BY customer_id, category
),
favourite AS (  -- the category with the most order value to date (ties: the first name)
    SELECT customer_id, category AS favourite_category
    FROM (
        SELECT customer_id, category,
               row_number() OVER (PARTITION BY customer_id ORDER BY spend DESC, category) AS rn
        FROM category_spend
    )
    WHERE rn = 1
),
recent AS (
    SELECT *, dt > date_sub(:snapshot_date, :short_days) AS in_short
    FROM events
    WHERE dt <= :snapshot_date AND dt > date_sub(:snapshot_date, :long_days)
),
latest AS (
    SELECT customer_id, device AS last_device, channel AS last_channel
    FROM (
        SELECT customer_id, device, channel,
               row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC, event_id DESC) AS rn
        FROM recent
    )
    WHERE rn = 1
),
agg AS (
    SELECT customer_id,
           count_if(event_type = 'visit' AND in_short) AS visits_7d,
           count_if(event_type = 'visit') AS visits_30d,
           count_if(event_type = 'search') AS searches_30d,
           count_if(event_type = 'cart_add' AND in_short) AS cart_adds_7d,
           count_if(event_type = 'cart_add') AS cart_adds_30d,
           count_if(event_type = 'order' AND in_short) AS orders_7d,
           count_if(event_type = 'order') AS orders_30d,
           coalesce(sum(CASE WHEN event_type = 'order' THEN items END), 0) AS items_30d,
           coalesce(sum(CASE WHEN event_type = 'order' AND in_short
                             THEN CAST(order_total AS DECIMAL(20, 6)) END), 0) AS spend_7d,
           coalesce(sum(CASE WHEN event_type = 'order'
                             THEN CAST(order_total AS DECIMAL(20, 6)) END), 0) AS spend_30d,
           count_if(event_type = 'order' AND discount) AS discounted_orders_30d,
           count_if(event_type = 'return') AS returns_30d,
           coalesce(sum(CASE WHEN event_type = 'return'
                             THEN CAST(order_total AS DECIMAL(20, 6)) END), 0) AS returned_30d,
           count_if(event_type = 'review') AS reviews_30d,
           count(DISTINCT dt) AS active_days_30d
    FROM recent
    GROUP BY customer_id
)
SELECT a.customer_id,
       CAST(:snapshot_date AS DATE) AS snapshot_date,
       CAST(a.visits_7d AS BIGINT) AS visits_7d,
       CAST(a.visits_30d AS BIGINT) AS visits_30d,
       CAST(a.searches_30d AS BIGINT) AS searches_30d,
       CAST(a.cart_adds_7d AS BIGINT) AS cart_adds_7d,
       CAST(a.cart_adds_30d AS BIGINT) AS cart_adds_30d,
       CAST(a.orders_7d AS BIGINT) AS orders_7d,
       CAST(a.orders_30d AS BIGINT) AS orders_30d,
       CAST(a.items_30d AS BIGINT) AS items_30d,
       CAST(a.spend_7d AS DOUBLE) AS spend_7d,
       CAST(a.spend_30d AS DOUBLE) AS spend_30d,
       CAST(a.discounted_orders_30d AS BIGINT) AS discounted_orders_30d,
       CAST(a.returns_30d AS BIGINT) AS returns_30d,
       CAST(a.returned_30d AS DOUBLE) AS returned_30d,
       CAST(a.reviews_30d AS BIGINT) AS reviews_30d,
       CAST(a.active_days_30d AS BIGINT) AS active_days_30d,
       CAST(datediff(:snapshot_date, h.last_dt) AS BIGINT) AS days_since_last_event,
       CAST(datediff(:snapshot_date, h.last_order_dt) AS BIGINT) AS days_since_last_order,
       CAST(datediff(:snapshot_date, h.first_dt) AS BIGINT) AS tenure_days,
       CAST(h.orders_to_date AS BIGINT) AS orders_to_date,
       CAST(CAST(h.spend_to_date AS DOUBLE) / nullif(h.orders_to_date, 0) AS DOUBLE)
           AS avg_order_value,
       f.favourite_category,
       l.last_device,
       l.last_channel
FROM agg a
JOIN history h ON h.customer_id = a.customer_id
JOIN latest l ON l.customer_id = a.customer_id
LEFT JOIN favourite f ON f.customer_id = a.customer_id
