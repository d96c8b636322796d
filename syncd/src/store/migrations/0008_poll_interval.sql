-- The poll interval in force per subscription (issue 13): `poll_interval`, stretched towards
-- `poll_interval_max` while webhooks are healthy. Written by the daemon when it changes, read
-- by `syncd status`.
ALTER TABLE cursors ADD COLUMN poll_interval_ms INTEGER;
