-- The prediction store's control tables, created idempotently by precast.store.
-- {{serial_key}} is the dialect's auto-numbered primary key (PostgreSQL: identity column;
-- SQLite: INTEGER PRIMARY KEY AUTOINCREMENT, so ids are never reused).
--
-- prediction_snapshots: one row per snapshot. A publish inserts its row, loads and keys the
-- table, and repoints predictions_current in ONE transaction, so other sessions only ever see
-- status 'published' (then 'retired' when retention drops its table) or, for an attempt that
-- failed, 'failed' with the reason in note. Lineage of every served row: model_name and
-- model_version (MLflow registry), mlflow_run_id (the training run: params, metrics),
-- training_data_version, data_version (the inference features scored) and code_version (git
-- commit of training). fallback_score is what lookups answer for entities without a
-- prediction (the model's training mean of the label: for binary its label rate, for
-- regression its mean label). activated_* say who last made this snapshot
-- the served one, and why.
CREATE TABLE IF NOT EXISTS prediction_snapshots (
    snapshot_id {{serial_key}},
    snapshot_date DATE NOT NULL,
    table_name TEXT UNIQUE,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    data_version TEXT NOT NULL,
    mlflow_run_id TEXT,
    training_data_version TEXT,
    code_version TEXT,
    fallback_score DOUBLE PRECISION,
    row_count BIGINT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    published_at TIMESTAMP WITH TIME ZONE,
    status TEXT NOT NULL CHECK (status IN ('loading', 'published', 'failed', 'retired')),
    note TEXT,
    activated_at TIMESTAMP WITH TIME ZONE,
    activated_by TEXT,
    activation_reason TEXT
);
-- prediction_activations: append-only history of what predictions_current served, from when,
-- and who decided (a publish, or a person rolling back or forward). "What was served at time
-- T" is the newest activation with activated_at <= T (see lineage.sql).
CREATE TABLE IF NOT EXISTS prediction_activations (
    activation_id {{serial_key}},
    snapshot_id INTEGER NOT NULL REFERENCES prediction_snapshots (snapshot_id),
    previous_snapshot_id INTEGER REFERENCES prediction_snapshots (snapshot_id),
    activated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    activated_by TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('publish', 'rollback')),
    reason TEXT NOT NULL
);
-- champion_history: which model version was the champion (served by the next predictions)
-- from valid_from until valid_to (NULL: still is), who decided ('gate', or a person's name)
-- and how: decision 'gate' (promoted by the champion gate), 'override' (a person forced a
-- challenger in), 'rollback' (a person went back to an earlier version), 'pin' / 'unpin' (a
-- person froze the champion against the gate, or released it; the version stays). evidence
-- links the gate's report or whatever the person cited. "What was the champion at time T"
-- is champion_at.sql.
CREATE TABLE IF NOT EXISTS champion_history (
    history_id {{serial_key}},
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    valid_from TIMESTAMP WITH TIME ZONE NOT NULL,
    valid_to TIMESTAMP WITH TIME ZONE,
    decided_by TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('gate', 'override', 'rollback', 'pin', 'unpin')),
    reason TEXT NOT NULL,
    evidence TEXT
);
-- champion_changes: the intent of every change of champion that moves the registry's alias
-- (gate, override, rollback), written BEFORE the alias moves and settled in the same
-- transaction as its champion_history row. A row with outcome NULL is a change that a crash
-- interrupted somewhere between the two writes: the next gate, promote or rollback rolls it
-- forward (moves the alias to model_version, serves snapshot_id for a rollback, writes the
-- history row), so the alias and the history never disagree for good. previous_version is
-- the champion it replaces. 'abandoned' (with note) ends one that could not be completed.
CREATE TABLE IF NOT EXISTS champion_changes (
    change_id {{serial_key}},
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    previous_version TEXT,
    snapshot_id INTEGER,
    requested_at TIMESTAMP WITH TIME ZONE NOT NULL,
    decided_by TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('gate', 'override', 'rollback')),
    reason TEXT NOT NULL,
    evidence TEXT,
    outcome TEXT CHECK (outcome IN ('completed', 'abandoned')),
    settled_at TIMESTAMP WITH TIME ZONE,
    note TEXT
);
-- model_metrics: every monitoring figure, one row each, windowed by snapshot (never
-- cumulative). kind 'performance': realised metrics of the predictions of snapshot_date
-- once its labels are complete; 'estimate': expected metrics from the scores alone while
-- labels are pending; 'drift': a feature's (or the score's) drift from the training
-- reference (metric psi, statistic, p_value, missing_rate, oov_rate). slice '' = all rows.
CREATE TABLE IF NOT EXISTS model_metrics (
    metric_id {{serial_key}},
    snapshot_date DATE NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('performance', 'estimate', 'drift')),
    feature TEXT NOT NULL,
    metric TEXT NOT NULL,
    slice TEXT NOT NULL,
    value DOUBLE PRECISION,
    rows_used BIGINT,
    computed_at TIMESTAMP WITH TIME ZONE NOT NULL
);
-- alerts: raised once per (snapshot_date, rule, subject): a rerun of the same monitor day
-- does not alert twice. rule names what was breached, subject what it was breached on.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id {{serial_key}},
    raised_at TIMESTAMP WITH TIME ZONE NOT NULL,
    snapshot_date DATE NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    message TEXT NOT NULL,
    value DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    UNIQUE (snapshot_date, rule, subject)
);
-- alert_deliveries: at-least-once delivery of alerts, one row per (alert, target) where
-- target is 'webhook' or 'email'. A row is written after each attempt: delivered_at is set
-- only once the target accepted the alert; a failed attempt adds to attempts and keeps its
-- redacted error in last_error. Every raise of alerts first retries the alerts that a
-- configured target has not accepted yet (within monitor.delivery_max_attempts and
-- monitor.delivery_max_age_days), so a target that was down gets them on the next run.
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id INTEGER NOT NULL REFERENCES alerts (alert_id),
    target TEXT NOT NULL CHECK (target IN ('webhook', 'email')),
    attempts INTEGER NOT NULL,
    last_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    last_error TEXT,
    PRIMARY KEY (alert_id, target)
);
