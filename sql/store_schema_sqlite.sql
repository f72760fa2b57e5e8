-- Control table of prediction snapshots (SQLite). Created idempotently by precast.store.
-- One row per publish attempt; status: loading -> published -> retired, or loading -> failed.
-- table_name is set right after the insert, in the same transaction, from the new id.
CREATE TABLE IF NOT EXISTS prediction_snapshots (
    snapshot_id INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshot_date DATE NOT NULL,
    table_name TEXT UNIQUE,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    data_version TEXT NOT NULL,
    row_count BIGINT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    published_at TIMESTAMP WITH TIME ZONE,
    status TEXT NOT NULL CHECK (status IN ('loading', 'published', 'failed', 'retired')),
    note TEXT
);
