-- syncd schema, version 1. Migrations are append-only: never edit a released migration;
-- add 0002_….sql and list it in store/mod.rs.

-- One row per configured subscription (created on first run). `fingerprint` is a digest of the
-- settings that shape what is stored (columns, filter, transform, …); when it changes, the
-- subscription resyncs itself.
CREATE TABLE subscriptions (
    name            TEXT PRIMARY KEY,
    entity          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'degraded')),
    state_reason    TEXT,
    created_at      TEXT NOT NULL,
    fingerprint     TEXT
);

-- The synced records: the latest copy of each, with its content hash.
CREATE TABLE records (
    subscription    TEXT NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    id              INTEGER NOT NULL,
    json            TEXT NOT NULL,
    hash            TEXT NOT NULL,   -- sha256 of the canonical JSON of `json` (see sync/hash.rs)
    source_modified TEXT,            -- max(registered, updated) as SuperOffice reports it (UTC)
    first_seen      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,   -- when we last stored a change
    deleted_at      TEXT,            -- tombstone: confirmed deleted at
    parent_id       INTEGER,         -- child subscriptions: the parent record this row was read for
    PRIMARY KEY (subscription, id)
);
CREATE INDEX records_by_parent ON records (subscription, parent_id) WHERE parent_id IS NOT NULL;

-- Where each subscription is: committed in the same transaction as the page it describes.
CREATE TABLE cursors (
    subscription        TEXT PRIMARY KEY REFERENCES subscriptions (name) ON DELETE CASCADE,
    phase               TEXT NOT NULL DEFAULT 'initial' CHECK (phase IN ('initial', 'incremental')),
    watermark           TEXT,        -- highest source_modified committed (as SuperOffice wrote it)
    window_from         TEXT,        -- first day (datetime for tickets) the next incremental pass reads
    resume              TEXT,        -- JSON: the pass in progress (window, parent, last primary key, …)
    last_success        TEXT,
    last_reconcile      TEXT,
    resync_requested    INTEGER NOT NULL DEFAULT 0,
    reconcile_requested INTEGER NOT NULL DEFAULT 0
);

-- Child subscriptions (`parent = …`): parent records whose children have been fully loaded once;
-- later passes read only the incremental window for them.
CREATE TABLE scopes (
    subscription    TEXT NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    parent_id       INTEGER NOT NULL,
    loaded_at       TEXT NOT NULL,
    PRIMARY KEY (subscription, parent_id)
) WITHOUT ROWID;

-- The local change feed. `seq` only grows; consumers remember the last one they processed.
CREATE TABLE changes (
    seq             INTEGER PRIMARY KEY,
    subscription    TEXT NOT NULL,
    entity          TEXT NOT NULL,
    id              INTEGER NOT NULL,
    op              TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    at              TEXT NOT NULL,
    hash            TEXT
);
CREATE INDEX changes_by_subscription ON changes (subscription, seq);

-- The documented interface for local consumers.
CREATE VIEW change_feed AS
    SELECT seq, subscription, entity, id, op, at, hash FROM changes;

-- Webhook events received (EventId deduplicates redeliveries); `body` is stored as received.
CREATE TABLE webhook_events (
    event_id        TEXT PRIMARY KEY,
    received_at     TEXT NOT NULL,
    event           TEXT NOT NULL,
    entity          TEXT,
    primary_key     INTEGER,
    body            TEXT NOT NULL,
    processed_at    TEXT,
    outcome         TEXT
);
CREATE INDEX webhook_events_pending ON webhook_events (processed_at) WHERE processed_at IS NULL;
CREATE INDEX webhook_events_by_record ON webhook_events (entity, primary_key, received_at);

-- Targeted refetches queued by webhooks, one row per subscription and record (several events
-- for one record coalesce); removed in the transaction that applies the refetch.
CREATE TABLE refetch_queue (
    subscription    TEXT NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    id              INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    event           TEXT NOT NULL,
    queued_at       TEXT NOT NULL,
    PRIMARY KEY (subscription, id)
) WITHOUT ROWID;

-- Echoes (`echoes`, written by the outbox) a subscription recognised as its own write; the echo
-- row is deleted once every subscription of the entity has recognised it.
CREATE TABLE echo_seen (
    subscription    TEXT NOT NULL,
    entity          TEXT NOT NULL,
    id              INTEGER NOT NULL,
    published_at    TEXT NOT NULL,
    PRIMARY KEY (subscription, entity, id, published_at)
) WITHOUT ROWID;

-- One row per sync pass.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    subscription    TEXT NOT NULL,
    kind            TEXT NOT NULL,   -- initial | poll | reconcile | webhook | resync
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'aborted', 'degraded')),
    fetched         INTEGER NOT NULL DEFAULT 0,
    inserts         INTEGER NOT NULL DEFAULT 0,
    updates         INTEGER NOT NULL DEFAULT 0,
    deletes         INTEGER NOT NULL DEFAULT 0,
    error           TEXT
);
CREATE INDEX runs_by_subscription ON runs (subscription, id);

-- Publish ledger: one row per idempotency key (syncd/src/outbox/mod.rs describes the states).
-- Every state change is its own transaction, committed before and after each write call.
CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: FIFO order and echo references
    key             TEXT NOT NULL COLLATE NOCASE UNIQUE, -- idempotency key (case-insensitive like SuperOffice); ForeignApp value of created records
    tenant          TEXT NOT NULL,
    action          TEXT NOT NULL,                       -- create | update | patch | delete | upsert (rejected outbox rows keep what they said)
    entity          TEXT NOT NULL,                       -- REST name: Contact, Person, …
    record_id       INTEGER,                             -- SuperOffice id given at intake
    external_key    TEXT,                                -- ForeignApp value identifying the record (upserts; stands in for record_id)
    lane            TEXT NOT NULL,                       -- FIFO lane: 'Contact/id/5' or 'Contact/key/<record key>'
    path            TEXT NOT NULL DEFAULT '{}',          -- JSON object
    query           TEXT NOT NULL DEFAULT '{}',          -- JSON object
    payload         TEXT,                                -- JSON (raw text on rejected outbox rows)
    payload_hash    TEXT NOT NULL,                       -- sha256 of the canonical request: replay vs mismatch
    if_unmodified_since TEXT,                            -- RFC 3339 UTC
    ius_source      TEXT CHECK (ius_source IN ('explicit', 'synced')),
    source          TEXT NOT NULL DEFAULT 'api',         -- cli | http | outbox | api
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'in_flight', 'done', 'failed', 'conflict', 'dead', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    maybe_sent      INTEGER NOT NULL DEFAULT 0,          -- 1: an earlier attempt may have reached the server
    next_attempt_at TEXT NOT NULL,
    last_attempt_at TEXT,
    result_id       INTEGER,                             -- the record created or touched (set right after a create's POST)
    result          TEXT,                                -- JSON the last write answered
    conflict        TEXT,                                -- JSON {ours, theirs, …} on a 412/409
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX tasks_pending ON tasks (tenant, id) WHERE state = 'pending';
CREATE INDEX tasks_open_lanes ON tasks (lane, id) WHERE state NOT IN ('done', 'skipped');
CREATE INDEX tasks_by_state ON tasks (state, updated_at);
CREATE INDEX tasks_results ON tasks (entity, result_id) WHERE result_id IS NOT NULL;

-- Transactional outbox: other local processes INSERT here, in their own transaction, and syncd
-- moves each row into `tasks` (one transaction per batch) and deletes it. A row that fails
-- validation becomes a `dead` task whose last_error names the field, never silently dropped.
--   INSERT INTO outbox (key, action, entity, record_id, payload)
--   VALUES ('order-42-customer', 'create', 'contact', NULL, '{"Name":"Amadeus AS"}');
-- Columns mean what the fields of `syncd publish` mean; `path` and `query` are JSON objects.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT,                                -- idempotency key (default: derived from the content)
    action          TEXT NOT NULL,                       -- create | update | patch | delete | upsert
    entity          TEXT NOT NULL,                       -- contact, person, sale, …
    record_id       INTEGER,
    external_key    TEXT,
    path            TEXT,
    query           TEXT,
    payload         TEXT,                                -- JSON text
    if_unmodified_since TEXT,                            -- RFC 3339
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Echo suppression: what our own publishes left on a record, so the subscriptions do not report
-- it as an external change. Upserted by the outbox in the transaction that marks the task done;
-- consumed by sync. `entity` is the table name (`contact`, `person`, …); `entity_hash` is the
-- sha256 of the canonical JSON the write answered, without `_Links` (NULL: we deleted it).
CREATE TABLE echoes (
    entity          TEXT NOT NULL,
    id              INTEGER NOT NULL,
    entity_hash     TEXT,
    published_at    TEXT NOT NULL,
    task_id         INTEGER,
    PRIMARY KEY (entity, id)
);
