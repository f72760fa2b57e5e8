-- Serialises the publishers of one store file (SQLite): a write statement takes the file's
-- write lock at once and keeps it until commit or rollback (WAL: readers go on reading).
DELETE FROM prediction_snapshots WHERE 1 = 0;
