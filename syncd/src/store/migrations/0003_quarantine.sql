-- Records whose transform failed or ran out of its time/size budget (syncd/src/transform.rs):
-- kept here instead of `records`, so the rest of their page commits and the cursor moves on.
-- Written in the page's transaction; a later successful transform of the record (a pass, or
-- `syncd quarantine retry`, which queues a targeted refetch) removes the row.
CREATE TABLE quarantine (
    subscription    TEXT NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    id              INTEGER NOT NULL,
    json            TEXT NOT NULL,   -- the record as fetched (the transform's input)
    error           TEXT NOT NULL,   -- why the transform did not produce it (the last time)
    first_at        TEXT NOT NULL,
    last_at         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 1,  -- transforms tried and failed
    PRIMARY KEY (subscription, id)
) WITHOUT ROWID;

-- The daemon's supervised loops (syncd/src/supervise.rs), so `syncd status` (which reads the
-- database, not the daemon) can say which loop is restarting and why. Emptied when a daemon
-- starts; `updated_at` says how current a row is.
CREATE TABLE loops (
    name            TEXT PRIMARY KEY,             -- `sync:<subscription>`, `outbox`, …
    state           TEXT NOT NULL CHECK (state IN ('running', 'backoff', 'stopped')),
    restarts        INTEGER NOT NULL DEFAULT 0,   -- since the daemon started
    failing         INTEGER NOT NULL DEFAULT 0,   -- failures in a row (0: healthy)
    last_error      TEXT,
    last_error_at   TEXT,
    updated_at      TEXT NOT NULL
);
