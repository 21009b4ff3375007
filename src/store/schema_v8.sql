-- labfeed study database, schema version 8: the daemon that received each
-- arrival (SPEC §10 `[storage] instance`), so a study written by several
-- sites says where every file or message came in. NULL for arrivals
-- recorded before.
ALTER TABLE receipt ADD COLUMN instance TEXT;
