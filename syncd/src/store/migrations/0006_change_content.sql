-- Change events with content (issue 12): what a consumer needs without reading `records`.
--   previous_hash: the hash `records` held for the record just before the change when it was
--                  live (updates, deletes); NULL for inserts (also re-inserts after a delete).
--   record:        the canonical stored JSON after the change, exactly the `records.json`
--                  written in the same transaction; NULL for deletes.
ALTER TABLE changes ADD COLUMN previous_hash TEXT;
ALTER TABLE changes ADD COLUMN record TEXT;

-- Rows written before this migration: `record` is filled from `records` only where the stored
-- copy still has exactly that change's hash (so it is that change's content); otherwise, and
-- for `previous_hash`, they stay NULL (unknown).
UPDATE changes SET record = (
    SELECT r.json FROM records r
    WHERE r.subscription = changes.subscription AND r.id = changes.id AND r.hash = changes.hash
) WHERE op != 'delete' AND hash IS NOT NULL;

DROP VIEW change_feed;
CREATE VIEW change_feed AS
    SELECT seq, subscription, entity, id, op, at, hash, previous_hash, record FROM changes;
