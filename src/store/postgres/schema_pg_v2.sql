-- labfeed study database on PostgreSQL, schema version 2 (SQLite's 8): the
-- daemon that received each arrival (`[storage] instance`).
ALTER TABLE receipt ADD COLUMN instance TEXT COLLATE "C";
