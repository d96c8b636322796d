-- The server's `$top` cap per subscription, when it answered fewer rows than asked although
-- more existed (FACTS §8.1: the default and maximum `$top` are undocumented).
ALTER TABLE cursors ADD COLUMN page_cap INTEGER;

-- API requests a run made (pages, GETs; SDK retries not counted), beside the rows it read.
ALTER TABLE runs ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;

-- The change feed is read by `seq` (its primary key); a per-subscription reader filters while
-- it walks `seq`, so every insert stays one b-tree write.
DROP INDEX changes_by_subscription;
