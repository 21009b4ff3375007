-- labfeed study database, schema version 4: which instant a repeated local
-- collection time was read as.
--
-- When the clocks go back, a local time such as 02:20 happens twice. A
-- collection time sent without an offset in that hour is read as the
-- occurrence nearer its nominal minute (meal start + minute), and the offset
-- of that occurrence is kept here ('+02:00' for the first 02:20 in
-- Europe/Stockholm, '+01:00' for the second). NULL for every other
-- observation: a time sent with an offset, one the zone has once, one it
-- skips, or one with no meal start to read it against.
ALTER TABLE observation ADD COLUMN collected_offset TEXT
    CHECK (collected_offset IS NULL OR collected_offset GLOB '[+-][0-9][0-9]:[0-9][0-9]');
