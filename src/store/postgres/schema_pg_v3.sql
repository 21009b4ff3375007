-- labfeed study database on PostgreSQL, schema version 3 (SQLite's 9):
-- `observation_slot` goes (no query looks observations up by slot). SQLite
-- also finds a content by an index of its hash's first 16 hex digits, with a
-- trigger for uniqueness; PostgreSQL keeps `raw.sha256` UNIQUE, whose index
-- serves the same lookups (`substr(sha256, 1, 16) = … AND sha256 = …`).
DROP INDEX observation_slot;
